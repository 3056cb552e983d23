package validate

import (
	"encoding/json"
	"path/filepath"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
)

// customKinds are the rendered kinds of other operators' APIs (Strimzi,
// Prometheus Operator), whose schemas live in their CRDs, not here.
var customKinds = map[string]bool{"kafka.strimzi.io/KafkaTopic": true, "monitoring.coreos.com/PodMonitor": true}

// TestHelmManifestsDecodeStrictly decodes every object the chart renders
// (defaults and the production example) into Kubernetes' own API types,
// strictly, as the API server does with field validation: a misspelled or
// misplaced field, a duplicate or a wrong type fails, where helm lint and
// the other tests would let it through and a cluster would drop or refuse it.
func TestHelmManifestsDecodeStrictly(t *testing.T) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{appsv1.AddToScheme, autoscalingv2.AddToScheme, batchv1.AddToScheme,
		corev1.AddToScheme, networkingv1.AddToScheme, policyv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	for name, values := range map[string][]string{
		"defaults":   nil,
		"production": {filepath.Join(root, "deploy", "k8s", "examples", "values-production.yaml")},
	} {
		t.Run(name, func(t *testing.T) {
			decoded := 0
			for _, o := range render(t, values...) {
				b, err := json.Marshal(map[string]any(o))
				if err != nil {
					t.Fatal(err)
				}
				var meta struct{ APIVersion, Kind string }
				_ = json.Unmarshal(b, &meta)
				group, _ := splitAPIVersion(meta.APIVersion)
				if customKinds[group+"/"+meta.Kind] {
					continue
				}
				if _, _, err := decoder.Decode(b, nil, nil); err != nil {
					t.Errorf("%s %s: %v", meta.Kind, o.name(), err)
					continue
				}
				decoded++
			}
			if decoded == 0 {
				t.Error("nothing decoded")
			}
		})
	}
}

// splitAPIVersion splits "apps/v1" into "apps" and "v1" ("v1" is core: "", "v1").
func splitAPIVersion(v string) (group, version string) {
	for i := len(v) - 1; i >= 0; i-- {
		if v[i] == '/' {
			return v[:i], v[i+1:]
		}
	}
	return "", v
}
