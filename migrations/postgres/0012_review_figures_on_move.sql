-- SQLite's twin of this migration makes its review trigger recompute the old course too, as
-- PostgreSQL's (0007) always did. Nothing to change here; the file keeps both trees numbered
-- alike.
SELECT 1;
