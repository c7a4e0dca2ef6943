-- Outputs no video shows any more (a failed video's withdrawn output, an attempt's output a
-- later attempt took the place of), to delete. A row is written in the transaction that stops
-- referencing the output, so a crash between that commit and the deletion loses nothing;
-- housekeeping deletes the prefix again once no writer can still be adding to it, then drops
-- the row.
CREATE TABLE doomed_outputs (
    prefix TEXT PRIMARY KEY,
    doomed_at BIGINT NOT NULL
);
