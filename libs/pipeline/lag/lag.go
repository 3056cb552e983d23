// Package lag reports how far a consumer group is behind its topics: per
// partition, the high watermark of the latest fetch minus the offset after
// the last record it returned.
//
// A transactional topic's commit markers take offsets too, so a consumer
// caught up on one may show a lag of 1 until the next record comes.
package lag

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// consumerLag is the lag of each partition a group fetched from in this process.
var consumerLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "answerback_consumer_lag_records",
	Help: "Records between a consumer's latest fetched record and the partition's high watermark, by group, topic and partition.",
}, []string{"group", "topic", "partition"})

func init() { prometheus.MustRegister(consumerLag) }

// Observe sets group's lag on every partition of fetches that returned
// records; partitions that returned none keep their last value. Safe for
// concurrent use.
func Observe(group string, fetches kgo.Fetches) {
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) == 0 {
			return
		}
		next := p.Records[len(p.Records)-1].Offset + 1
		consumerLag.WithLabelValues(group, p.Topic, strconv.Itoa(int(p.Partition))).Set(float64(max(p.HighWatermark-next, 0)))
	})
}
