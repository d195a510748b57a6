-- Workflow pages (docs/WORKFLOWS.md, "The workflow page").
--
-- Each version keeps the text it was uploaded as, comments and layout
-- included, so its page can show it and diff it against another version.
-- A version stored before this has none (NULL): its page shows the stored
-- definition rendered as YAML, and says so. The text is the upload's body,
-- which the definition limit (MAX_DEFINITION_BYTES) already bounds.
ALTER TABLE workflows ADD COLUMN source TEXT;

-- A workflow's runs by status, newest first: its page counts how the last
-- N finished runs ended and how many are still going, each a range of this
-- index, and the run list filtered by workflow reads it instead of every run.
CREATE INDEX runs_by_workflow ON runs (workflow_name, status, id);
