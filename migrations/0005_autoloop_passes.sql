-- One row per autoloop pass: how many targets got each reason. The decision journal itself
-- keeps only decisions that changed or acted, so this is what shows every pass ran.
CREATE TABLE autoloop_passes (
    pass_id  BIGINT PRIMARY KEY NOT NULL,
    at_unix  BIGINT NOT NULL,
    mode     TEXT   NOT NULL,
    targets  BIGINT NOT NULL,
    counts   TEXT   NOT NULL -- reason=count, comma-separated, by reason name
);
CREATE INDEX autoloop_passes_at ON autoloop_passes (at_unix);
