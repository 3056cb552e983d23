package view

// MigrateUpTo lets tests build the schema of an older version.
var MigrateUpTo = migrateUpTo
