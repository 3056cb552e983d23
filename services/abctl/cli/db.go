package cli

import (
	"github.com/answerback/answerback/libs/domain/database"
	"github.com/spf13/cobra"
)

func init() { register(newDBCmd) }

func newDBCmd(a *App) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "db",
		Short: "Prepare the database for the services' roles",
	}
	var role string
	grant := &cobra.Command{
		Use:   "grant-gateway --role ROLE",
		Short: "Let gateways connect as a role of their own, behind the tenant wall",
		Long: `grant-gateway brings the schema up to date and grants ROLE what a gateway
needs: reading the view, the recorded outcomes and the change log, and
writing its own idempotency keys and pending marks. Run it as the tables'
owner (DATABASE_URL of the projector), after creating ROLE with LOGIN; give
the gateways a DATABASE_URL that connects as ROLE. PostgreSQL's row-level
security then shows a gateway only the rows of the tenant of the request it
serves — a second wall beside every query's own tenant filter. On the
owner's role the wall does not apply. Granting again changes nothing; a
rebuild keeps the grants.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if role == "" {
				return usageErrorf("--role is required")
			}
			pool, err := a.Pool(cmd.Context())
			if err != nil {
				return err
			}
			if err := database.GrantGateway(cmd.Context(), pool, role); err != nil {
				return err
			}
			return a.Print(map[string]any{"role": role, "granted": true}, func(t *Table) {
				t.Row("ROLE", "GRANTED")
				t.Row(role, "yes")
			})
		},
	}
	grant.Flags().StringVar(&role, "role", "", "the gateways' PostgreSQL role (it must exist)")
	cmd.AddCommand(grant)
	return cmd
}
