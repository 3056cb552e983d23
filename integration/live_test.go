package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/testenv"
)

// sse is one Server-Sent Event as a client sees it.
type sse struct {
	id, event string
	data      struct {
		Version int64           `json:"version"`
		Type    string          `json:"type"`
		Order   json.RawMessage `json:"order"`
	}
	at time.Time
}

// stream opens the live view of order on gateway base, resuming after
// lastEventID when it is not empty; events arrive on the channel until
// close is called.
func stream(t testing.TB, base, token, order, lastEventID string) (<-chan sse, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/orders/"+order+"/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req) //nolint:bodyclose // the reading goroutine closes it
	if err != nil {
		cancel()
		t.Fatalf("stream %s: %v", order, err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		resp.Body.Close()
		cancel()
		t.Fatalf("stream %s: %d %s", order, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan sse, 64)
	done := make(chan struct{})
	go func() { // owned by the caller: close ends it
		defer close(done)
		defer close(events)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.id != "" {
					ev.at = time.Now()
					events <- ev
				}
				ev = sse{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(line[6:]), &ev.data)
			}
		}
	}()
	return events, func() { cancel(); <-done }
}

// next returns the next event, failing the test after d.
func next(t testing.TB, events <-chan sse, d time.Duration) sse {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(d):
		t.Fatalf("no event within %s", d)
	}
	return sse{}
}

// TestLiveViewResume: a live view opened on one gateway shows a change
// made through the other; after missing several versions, Last-Event-ID
// resumes with all of them, in order, no duplicate; when the change log no
// longer has them, with the whole view.
func TestLiveViewResume(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		s := startStack(t, k, stackOptions{})
		s.seedCatalog(loadCatalog)
		s.mustCall(0, http.StatusCreated, http.MethodPost, "/v1/orders", map[string]any{"id": "lv", "customerId": "c"})

		events, closeStream := stream(t, s.gateways[1], s.token, "lv", "")
		if ev := next(t, events, 5*time.Second); ev.event != "snapshot" || ev.id != "1" || len(ev.data.Order) == 0 {
			t.Fatalf("first event %+v, want the snapshot at version 1 with the order", ev)
		}
		sent := time.Now()
		s.mustCall(0, http.StatusOK, http.MethodPost, "/v1/orders/lv/items", map[string]any{"sku": "kiwi", "quantity": 1})
		ev := next(t, events, 5*time.Second)
		if ev.event != "item-added" || ev.id != "2" || !strings.Contains(string(ev.data.Order), "kiwi") {
			t.Fatalf("event %+v, want item-added at version 2 with the order holding kiwi", ev)
		}
		t.Logf("a change through gateway 1 reached a live view on gateway 2 %s after the command was sent", ev.at.Sub(sent))
		closeStream()

		// Versions 3 to 6 happen while nobody watches.
		for range 3 {
			s.mustCall(0, http.StatusOK, http.MethodPost, "/v1/orders/lv/items", map[string]any{"sku": "apple", "quantity": 1})
		}
		s.mustCall(1, http.StatusOK, http.MethodDelete, "/v1/orders/lv/items/kiwi", nil)
		events, closeStream = stream(t, s.gateways[0], s.token, "lv", "2")
		var got []string
		for range 4 {
			ev := next(t, events, 5*time.Second)
			got = append(got, ev.id+":"+ev.event)
		}
		if want := []string{"3:item-added", "4:item-added", "5:item-added", "6:item-removed"}; !slices.Equal(got, want) {
			t.Errorf("resumed with %v, want %v", got, want)
		}
		select {
		case ev := <-events:
			t.Errorf("an extra event after the resume: %+v", ev)
		case <-time.After(300 * time.Millisecond):
		}
		closeStream()

		// The change log lost them (as after its retention): the whole view.
		if _, err := s.pg.Pool.Exec(testenv.Context(t, 10*time.Second), `DELETE FROM view_changes WHERE aggregate_id = $1 AND version <= 4`, envelope.StreamKey(testTenant, "lv")); err != nil {
			t.Fatal(err)
		}
		events, closeStream = stream(t, s.gateways[1], s.token, "lv", "2")
		defer closeStream()
		if ev := next(t, events, 5*time.Second); ev.event != "snapshot" || ev.id != "6" || len(ev.data.Order) == 0 {
			t.Errorf("resumed past the log with %+v, want the snapshot at version 6", ev)
		}
		// Bad input is refused with a problem, a missing order is 404.
		for _, c := range []struct {
			path, lastEventID string
			want              int
		}{{"/v1/orders/nope/stream", "", 404}, {"/v1/orders/lv/stream", "x", 400}} {
			req, _ := http.NewRequest(http.MethodGet, s.gateways[0]+c.path, nil)
			req.Header.Set("Authorization", "Bearer "+s.token)
			req.Header.Set("Last-Event-ID", c.lastEventID)
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("GET %s (Last-Event-ID %q): %d %s, want %d problem", c.path, c.lastEventID, resp.StatusCode, resp.Header.Get("Content-Type"), c.want)
			}
		}
	})
}

// fanOut opens n live views of one order on one gateway, sends one command
// and returns how long each view took to show it.
func fanOut(t testing.TB, s *stack, n int) []time.Duration {
	t.Helper()
	s.mustCall(0, http.StatusCreated, http.MethodPost, "/v1/orders", map[string]any{"id": "fan", "customerId": "c"})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	streams := make([]<-chan sse, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { // owned by fanOut: waited for below
			defer wg.Done()
			var closeStream func()
			streams[i], closeStream = stream(t, s.gateways[0], s.token, "fan", "")
			t.Cleanup(closeStream)
		}()
	}
	wg.Wait()
	for i, events := range streams {
		if ev := next(t, events, 30*time.Second); ev.event != "snapshot" {
			t.Fatalf("view %d: first event %+v", i, ev)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("%d live views open: the heap grew by %.1f MiB, gateway and clients together (%.1f KiB per view)",
		n, float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20), float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/1024/float64(n))
	sent := time.Now()
	s.mustCall(0, http.StatusOK, http.MethodPost, "/v1/orders/fan/items", map[string]any{"sku": "kiwi", "quantity": 1})
	took := make([]time.Duration, n)
	for i, events := range streams {
		ev := next(t, events, 10*time.Second)
		if ev.event != "item-added" || ev.id != "2" {
			t.Fatalf("view %d: %+v, want item-added at version 2", i, ev)
		}
		took[i] = ev.at.Sub(sent)
	}
	slices.Sort(took)
	return took
}

// TestLiveViewFanOut: a thousand live views of one order on one gateway
// all show a change. The fan-out runs through PostgreSQL, so the embedded
// broker suffices.
func TestLiveViewFanOut(t *testing.T) {
	t.Parallel()
	s := startStack(t, testenv.EmbeddedKafka(t), stackOptions{gateways: 1})
	s.seedCatalog(loadCatalog)
	took := fanOut(t, s, 1000)
	t.Logf("1,000 live views showed the change after %s (first), %s (median), %s (last), from the command's send",
		took[0], took[len(took)/2], took[len(took)-1])
}

// BenchmarkLiveViewFanOut prints how long a change takes to reach 1,000
// live views of one order on one gateway, from the command's send (real
// Kafka and PostgreSQL).
//
//	cd integration && go test -run '^$' -bench LiveViewFanOut -benchtime 1x .
func BenchmarkLiveViewFanOut(b *testing.B) {
	for range b.N {
		s := startStack(b, testenv.RealKafka(b), stackOptions{gateways: 1})
		s.seedCatalog(loadCatalog)
		took := fanOut(b, s, 1000)
		b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "max-ms")
		fmt.Println("fan-out to 1,000 live views: p50", took[len(took)/2], "p99", took[len(took)*99/100], "max", took[len(took)-1], "after", strconv.Itoa(len(took)), "views")
	}
}
