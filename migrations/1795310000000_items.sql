-- Up Migration

CREATE TABLE items (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  owner        text NOT NULL,
  name         text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
  description  text CHECK (char_length(description) <= 2000),
  tags         text[] NOT NULL DEFAULT '{}' CHECK (cardinality(tags) <= 20),
  version      integer NOT NULL DEFAULT 1,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);
-- The list query: one owner's items in keyset order, both directions.
CREATE INDEX items_owner_created_idx ON items (owner, created_at, id);
-- ?tag= filter.
CREATE INDEX items_tags_idx ON items USING gin (tags);

-- Down Migration
DROP TABLE items;
