-- When each swap entered its current state, Unix seconds. updated_at_unix moves with every
-- saved step, and a swap saves a step on every block while it waits (confirmations, fee
-- estimates), so it cannot tell how long a swap has been stuck in one state; this column moves
-- only when the state changes. The store sets it on every save; rows written before it existed
-- get it from their history: the first update of the newest run of their current state.
ALTER TABLE swaps ADD COLUMN state_since_unix BIGINT;
ALTER TABLE loop_in_swaps ADD COLUMN state_since_unix BIGINT;

UPDATE swaps SET state_since_unix = COALESCE(
    (SELECT MIN(u.updated_at_unix) FROM swap_updates u
      WHERE u.swap_hash = swaps.swap_hash
        AND u.id > COALESCE((SELECT MAX(v.id) FROM swap_updates v
                              WHERE v.swap_hash = swaps.swap_hash
                                AND v.state_code != swaps.state_code), 0)),
    updated_at_unix);

UPDATE loop_in_swaps SET state_since_unix = COALESCE(
    (SELECT MIN(u.updated_at_unix) FROM loop_in_updates u
      WHERE u.swap_hash = loop_in_swaps.swap_hash
        AND u.id > COALESCE((SELECT MAX(v.id) FROM loop_in_updates v
                              WHERE v.swap_hash = loop_in_swaps.swap_hash
                                AND v.state_code != loop_in_swaps.state_code), 0)),
    updated_at_unix);
