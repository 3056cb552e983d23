package validate

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/answerback/answerback/libs/pipeline/registry"
	"github.com/answerback/answerback/libs/pipeline/topics"
)

// TestKafkaTopics: the chart's Strimzi KafkaTopic resources are the topics
// the services create (topics.Specs, the gateway registry), with the same
// configuration, replicated 3 times with min.insync.replicas 2.
func TestKafkaTopics(t *testing.T) {
	objs := render(t, filepath.Join(root, "deploy", "k8s", "examples", "values-production.yaml"))
	rendered := map[string]object{}
	for _, o := range objs {
		if o.kind() == "KafkaTopic" {
			name := str(dig(o, "spec", "topicName"))
			if name == "" {
				name = o.name()
			}
			rendered[name] = o
		}
	}
	if len(rendered) == 0 {
		t.Fatal("the production example renders no KafkaTopic")
	}
	want := []topics.Spec{registry.TopicSpec("")}
	for _, domain := range []string{"orders", "catalog"} {
		want = append(want, topics.For("", domain).Specs()...)
	}
	for _, spec := range want {
		o, ok := rendered[spec.Name]
		if !ok {
			t.Errorf("no KafkaTopic %s", spec.Name)
			continue
		}
		if spec.Name == topics.GatewayRegistry("") && str(dig(o, "spec", "partitions")) != "1" {
			t.Errorf("%s: %v partitions, want 1 (as the gateways create it)", spec.Name, dig(o, "spec", "partitions"))
		}
		if r := str(dig(o, "spec", "replicas")); r != "3" {
			t.Errorf("%s: replicas %s, want 3", spec.Name, r)
		}
		cfg, _ := dig(o, "spec", "config").(map[string]any)
		for k, v := range spec.Configs {
			if fmt.Sprint(cfg[k]) != v {
				t.Errorf("%s: %s = %v, want %s (as the services create it)", spec.Name, k, cfg[k], v)
			}
		}
		if fmt.Sprint(cfg["min.insync.replicas"]) != "2" {
			t.Errorf("%s: min.insync.replicas %v, want 2", spec.Name, cfg["min.insync.replicas"])
		}
	}
}
