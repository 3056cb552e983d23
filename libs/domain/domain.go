// Package domain is the reference domain that Answerback ships with: orders
// (orders) and catalog items (catalog), their view and replies (view), and
// the problems they answer with (problems).
package domain

import (
	"github.com/answerback/answerback/libs/domain/catalog"
	"github.com/answerback/answerback/libs/domain/orders"
)

// Names are the reference domain's aggregate types, each a domain with
// topics of its own (topics.For).
var Names = []string{orders.Name, catalog.Name}
