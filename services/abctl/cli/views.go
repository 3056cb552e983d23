package cli

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/answerback/answerback/libs/domain/view"
	"github.com/answerback/answerback/libs/projector"
)

// viewDef is a read model abctl replays and rebuilds: its projection, and
// the migrations that create its tables.
type viewDef struct {
	projection projector.Projection
	migrate    func(ctx context.Context, pool *pgxpool.Pool) error
}

// views are the deployment's read models by name (the projection's name).
func (a *App) views() map[string]viewDef {
	p := view.Projection(a.Prefix)
	return map[string]viewDef{p.Name: {projection: p, migrate: view.Migrate}}
}

// view returns the named read model, or an error listing the known ones.
func (a *App) view(name string) (viewDef, error) {
	all := a.views()
	v, ok := all[name]
	if !ok {
		return viewDef{}, withCode(ExitNotFound, fmt.Errorf("no view %q (known: %s)", name, strings.Join(slices.Sorted(maps.Keys(all)), ", ")))
	}
	return v, nil
}

// eventTopics are the view's event topics, sorted.
func (v viewDef) eventTopics() []string { return slices.Sorted(maps.Keys(v.projection.Topics)) }
