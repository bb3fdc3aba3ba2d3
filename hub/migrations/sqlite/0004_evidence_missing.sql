-- Evidence whose images could not be written (disk full, folder not writable): the finding is
-- stored all the same, its evidence row has empty paths and says why here. NULL: images stored.
ALTER TABLE evidence ADD COLUMN missing TEXT;
