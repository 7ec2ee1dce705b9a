-- The direction of a journalled decision's proposed swap: 'out' (Loop Out, below the band),
-- 'in' (Loop In, above it), NULL when the decision proposed no swap (and for rows written
-- before Loop In policies existed, which were all Loop Out or none).
ALTER TABLE decision_journal ADD COLUMN direction TEXT;
