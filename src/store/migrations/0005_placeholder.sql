-- 0005: a placeholder on the providers branch (the authcache branch brings
-- the real 0005); the lead deletes this file at merge.
SELECT 1;
