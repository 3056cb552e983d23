package consumer

import (
	"fmt"
	"strings"
)

// PrimaryKeySQL is a statement that makes cols the primary key of table
// when it is anything else (as the one from before tenants): it drops the key
// there is, whatever its name, and adds the new one. table and cols are
// names of this schema, not input.
func PrimaryKeySQL(table string, cols ...string) string {
	return fmt.Sprintf(`
DO $$
DECLARE
	pk   name;
	cols text[];
BEGIN
	SELECT c.conname, array_agg(a.attname::text ORDER BY k.ord) INTO pk, cols
	FROM pg_constraint c
	CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
	JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
	WHERE c.conrelid = '%[1]s'::regclass AND c.contype = 'p'
	GROUP BY c.conname;
	IF cols IS DISTINCT FROM ARRAY['%[2]s'] THEN
		IF pk IS NOT NULL THEN
			EXECUTE format('ALTER TABLE %[1]s DROP CONSTRAINT %%I', pk);
		END IF;
		ALTER TABLE %[1]s ADD PRIMARY KEY (%[3]s);
	END IF;
END $$;
`, table, strings.Join(cols, "', '"), strings.Join(cols, ", "))
}
