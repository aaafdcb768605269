"""Everything that speaks SQL: engine, dialects, schema, migrations and the typed stores."""
