package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// scalingPlan is the scaling matrix: every partition count with every
// instance count, each a fresh deployment under its own topic prefix and
// database, driven by the spread mix at stepped rates.
type scalingPlan struct {
	Partitions []int `json:"partitions"`
	Instances  []int `json:"instances"`
	Orders     int   `json:"orders"`
	plan
}

func scalingPlanFor(quick bool) scalingPlan {
	if quick {
		return scalingPlan{Partitions: []int{1, 6}, Instances: []int{1}, Orders: 100,
			plan: plan{Rates: []float64{100}, Step: 3 * time.Second, WarmUp: 2 * time.Second, P99Bound: 100 * time.Millisecond}}
	}
	return scalingPlan{Partitions: []int{1, 6, 12}, Instances: []int{1, 2}, Orders: 200,
		plan: plan{Rates: []float64{100, 200, 300, 450, 600, 900, 1200, 1500}, Step: 4 * time.Second, WarmUp: 3 * time.Second, P99Bound: 100 * time.Millisecond}}
}

// measureScaling runs the matrix and returns each configuration's highest
// sustained rate.
func measureScaling(ctx context.Context, e *env, cfg config, sp scalingPlan, log *slog.Logger) ([]scalingPoint, error) {
	var out []scalingPoint
	for _, instances := range sp.Instances {
		for _, partitions := range sp.Partitions {
			l := layout{
				prefix:     fmt.Sprintf("scale-p%d-i%d.", partitions, instances),
				database:   fmt.Sprintf("scale_p%d_i%d", partitions, instances),
				partitions: partitions,
				instances:  instances,
			}
			sys, err := startAnswerback(ctx, e, cfg, l, log)
			if err != nil {
				return out, fmt.Errorf("scaling, %d partitions × %d instances: %w", partitions, instances, err)
			}
			sys.brokerRequests = nil // the matrix reports rates only: no JMX read around each step
			s, err := measure(ctx, sys, mix{name: fmt.Sprintf("spread (%d orders)", sp.Orders), orders: sp.Orders}, sp.plan, log)
			sys.stop()
			if err != nil {
				return out, fmt.Errorf("scaling, %d partitions × %d instances: %w", partitions, instances, err)
			}
			out = append(out, scalingPoint{Partitions: partitions, Instances: instances, MaxSustained: s.MaxSustained, Steps: s.Steps})
			log.Info("scaling", "partitions", partitions, "instances", instances, "maxSustained", s.MaxSustained)
		}
	}
	return out, nil
}
