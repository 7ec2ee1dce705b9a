-- The channels an autoloop swap was made for, when the swap itself may pay through any
-- channel (`swap.outgoing: any`): its target's channels, so the per-target in-flight limit and
-- the backoff after a failure apply to them. Channels are short channel ids (lnd's number),
-- comma-separated.
CREATE TABLE autoloop_swap_channels (
    swap_hash TEXT PRIMARY KEY NOT NULL,
    channels  TEXT NOT NULL
);
