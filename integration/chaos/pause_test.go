//go:build chaos

package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// A paused instance is a zombie in the making: SIGSTOPped for longer than its
// consumer group's session, it loses its partitions to the other instance,
// and the transactions it left open are aborted (by the coordinator past
// their timeout, or by a new owner fencing their transactional ID); woken with
// SIGCONT, it still believes it owns them, and may hold a batch decided from
// state that is no longer current. Whatever it does then must not be read:
// the invariants of check (versions 1..n, one event per command, answers at
// the log's versions) hold over the whole run.
const (
	// pausedFor is how long a paused instance stays stopped at least: past
	// the session timeout of the aggregate and projector runtimes (10s) and
	// the aggregator's transaction timeout (10s). The coordinator sweeps for
	// timed-out transactions every 5s (kafkalocal), so an abort may come
	// later: the pause lasts until it is seen (confirmBound).
	pausedFor = 15 * time.Second
	// confirmBound is how much longer, at most, the instance stays stopped
	// while the suite waits to see the fault take effect.
	confirmBound = 30 * time.Second
	// rejoinBound is how long the woken instance has to be back in its group,
	// itself or restarted by its supervisor.
	rejoinBound = 60 * time.Second
	// steadyFor is how long the group must keep both instances, neither
	// restarting, for the woken one to count as back.
	steadyFor = 5 * time.Second
)

// pause is one paused-instance fault.
type pause struct {
	s     *stack
	name  string // the fault's, for notes and errors
	p     *proc
	group string // the instance's consumer group
	// txnTopic is a topic the instance writes in its transactions,
	// co-partitioned with the topic it consumes (an aggregator's snapshots):
	// an open transaction that writes partition p of it belongs to the owner
	// of partition p. Empty: the instance has no transactions.
	txnTopic string
	// exitOK is the error text with which the woken instance may stop (its
	// supervisor restarting it); empty: it must not stop.
	exitOK string

	// Of the current injection:
	pid        int
	before     groupView
	openAtStop map[string]kadm.DescribedTransaction // every transaction open at the stop, by transactional ID
	stoppedAt  time.Time
	logFrom    int64
	note       []string
}

// pauseFault pauses p, a member of group, as pause describes, and checks the
// pause took effect and the woken instance came back.
func (s *stack) pauseFault(name string, p *proc, group, txnTopic, exitOK string) fault {
	z := &pause{s: s, name: name, p: p, group: group, txnTopic: txnTopic, exitOK: exitOK}
	return fault{name: name, inject: z.stop, hold: pausedFor, recover: z.wake, check: z.rejoined}
}

// stop waits for the group to be settled with both instances owning
// partitions, then SIGSTOPs the instance — when it has transactions,
// preferably while one is open — and checks it is stopped.
func (z *pause) stop() {
	t := z.s.t
	z.note, z.pid, z.openAtStop = nil, 0, nil
	var err error
	z.before, err = z.s.awaitGroup(z.group, confirmBound, func(g groupView) bool { return g.settled(2) && g.everyMemberOwns() })
	if err != nil {
		t.Errorf("%s: before the pause: %v", z.name, err)
	}
	if z.txnTopic != "" {
		z.awaitOpenTransactions(5 * time.Second)
	}
	pid := z.p.Pid()
	z.stoppedAt = time.Now()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Errorf("%s: SIGSTOP %s (pid %d): %v", z.name, z.p.Name, pid, err)
		return
	}
	z.pid = pid
	if err := awaitProcState(z.pid, func(st byte) bool { return st == 'T' }, 2*time.Second); err != nil {
		t.Errorf("%s: after SIGSTOP: %v", z.name, err)
	}
	z.addNote("%s (pid %d) stopped (state T) while the group %s had %d members owning %s", z.p.Name, z.pid, z.group, len(z.before.members), z.before.ownership())
	if z.txnTopic != "" {
		if z.openAtStop, err = z.s.openTransactions(); err != nil {
			t.Errorf("%s: the transactions open at the stop: %v", z.name, err)
		}
	}
}

// wake waits, the instance still stopped, until its member is gone from the
// group and its partitions are all on the other member, and its open
// transaction, if any, is aborted; then it sends SIGCONT. An effect that
// cannot be seen within confirmBound fails the run.
func (z *pause) wake() {
	t := z.s.t
	if z.pid == 0 {
		return // not stopped: stop said why
	}
	defer func() {
		// Always woken, confirmed or not.
		if err := syscall.Kill(z.pid, syscall.SIGCONT); err != nil {
			t.Errorf("%s: SIGCONT %s (pid %d): %v", z.name, z.p.Name, z.pid, err)
		}
		if err := awaitProcState(z.pid, func(st byte) bool { return st != 'T' }, 2*time.Second); err != nil {
			t.Errorf("%s: after SIGCONT: %v", z.name, err)
		}
	}()
	after, err := z.s.awaitGroup(z.group, confirmBound, z.moved)
	if err != nil {
		t.Errorf("%s: the pause did not move the partitions (the fault did not take effect): %v", z.name, err)
	} else {
		z.addNote("after %s stopped, the group had 1 member owning %s", time.Since(z.stoppedAt).Round(100*time.Millisecond), after.ownership())
		if z.txnTopic != "" {
			z.confirmAborted(after)
		}
	}
	if st, err := procState(z.pid); err != nil || st != 'T' {
		t.Errorf("%s: %s was not stopped any more before SIGCONT (state %q, %v)", z.name, z.p.Name, st, err)
	}
	z.logFrom = fileSize(z.p.Log)
	z.addNote("SIGCONT after %s", time.Since(z.stoppedAt).Round(100*time.Millisecond))
}

// moved reports whether a member the group had before the stop is gone (the
// stopped instance's: a stopped process cannot heartbeat) and the one member
// left owns every partition of the group's topics.
func (z *pause) moved(g groupView) bool {
	if !g.settled(1) {
		return false
	}
	for id := range z.before.members {
		if _, still := g.members[id]; !still {
			return true // the instance that left: the stopped one
		}
	}
	return false
}

// confirmAborted checks that the transactions the stopped instance left open
// — those open at the stop that wrote partitions of txnTopic its member
// owned — are no longer open: ended without their producer, they were
// aborted, by the coordinator past their timeout or by the new owner fencing
// their transactional ID. It stays stopped while it waits (within
// confirmBound).
func (z *pause) confirmAborted(after groupView) {
	t := z.s.t
	var itsPartitions []int32 // those the stopped instance's member owned
	for id, owned := range z.before.members {
		if _, still := after.members[id]; !still {
			itsPartitions = append(itsPartitions, partitionNumbers(owned)...)
		}
	}
	its := map[string]kadm.DescribedTransaction{}
	for id, txn := range z.openAtStop {
		for _, p := range itsPartitions {
			if txn.Topics.Lookup(z.txnTopic, p) {
				its[id] = txn
			}
		}
	}
	if len(its) == 0 {
		z.addNote("none of its transactions was open at the stop")
		return
	}
	deadline := time.Now().Add(confirmBound)
	for {
		var ended []string
		var open []string
		for id, was := range its {
			now, err := z.s.describeTransaction(id)
			if err != nil || now.State == "Ongoing" && now.ProducerID == was.ProducerID && now.ProducerEpoch == was.ProducerEpoch && now.StartTimestamp == was.StartTimestamp {
				open = append(open, fmt.Sprintf("%s (%v)", id, err))
				continue
			}
			ended = append(ended, fmt.Sprintf("%s (producer %d epoch %d, now %s, producer %d epoch %d)", id, was.ProducerID, was.ProducerEpoch, now.State, now.ProducerID, now.ProducerEpoch))
		}
		if len(open) == 0 {
			slices.Sort(ended)
			z.addNote("its %d transaction(s) open at the stop were aborted without it: %s", len(ended), strings.Join(ended, ", "))
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: transactions open at the stop still open after %s (the fault did not take effect): %s", z.name, time.Since(z.stoppedAt).Round(time.Second), strings.Join(open, ", "))
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// rejoined waits for the woken instance to be back in its group, as it is or
// restarted by its supervisor, counts its restarts and holds them against
// exitOK, and adds what happened to the report's notes.
func (z *pause) rejoined() {
	t := z.s.t
	defer func() {
		z.s.cluster.note(z.name, strings.Join(z.note, "; "))
	}()
	if z.pid == 0 {
		return
	}
	woke := time.Now()
	pid, restarts := z.pid, 0
	var steady time.Time // since when the group has held both instances
	var last groupView
	back := "never"
	for {
		if cur := z.p.Pid(); cur != pid {
			pid, restarts = cur, restarts+1
		}
		var err error
		last, err = z.s.describeGroup(z.group)
		alive := false
		if st, err := procState(pid); err == nil && st != 'T' && st != 'Z' {
			alive = true
		}
		if err == nil && alive && last.settled(2) {
			if steady.IsZero() {
				steady = time.Now()
			}
			if time.Since(steady) >= steadyFor {
				back = steady.Sub(woke).Round(100 * time.Millisecond).String()
				break
			}
		} else {
			steady = time.Time{}
		}
		if time.Since(woke) > rejoinBound {
			t.Errorf("%s: the woken %s was not back in %s within %s (restarts %d; group %s; err %v)", z.name, z.p.Name, z.group, rejoinBound, restarts, last.ownership(), err)
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	logged := readFrom(z.p.Log, z.logFrom)
	var errorLines []string
	for line := range strings.Lines(logged) {
		if strings.Contains(line, `"level":"ERROR"`) {
			errorLines = append(errorLines, strings.TrimSpace(line))
		}
	}
	switch {
	case restarts == 0:
		z.addNote("woken, it did not restart; the group settled with 2 members %s after SIGCONT", back)
	case z.exitOK != "" && strings.Contains(logged, z.exitOK):
		z.addNote("woken, it stopped (%q) and was restarted %d time(s); the group settled with 2 members %s after SIGCONT", z.exitOK, restarts, back)
	default:
		t.Errorf("%s: the woken %s stopped and was restarted %d time(s), not for %q; its errors: %s", z.name, z.p.Name, restarts, z.exitOK, strings.Join(errorLines, "\n"))
		z.addNote("woken, it stopped for another reason and was restarted %d time(s)", restarts)
	}
	if len(errorLines) > 0 {
		t.Logf("%s: errors %s logged after SIGCONT:\n%s", z.name, z.p.Name, strings.Join(errorLines, "\n"))
	}
}

func (z *pause) addNote(format string, args ...any) {
	z.note = append(z.note, fmt.Sprintf(format, args...))
}

// groupView is a consumer group as its coordinator describes it: its state,
// the partitions each member owns, and how many partitions the topics its
// members subscribe to have.
type groupView struct {
	state      string
	members    map[string]kadm.TopicsSet // member ID → the partitions it owns
	topics     []string                  // subscribed to by its members, sorted
	partitions int                       // of those topics
}

// settled reports whether the group is stable with n members and every
// partition of its topics assigned.
func (g groupView) settled(n int) bool {
	assigned := 0
	for _, owned := range g.members {
		assigned += len(partitionNumbers(owned))
	}
	return g.state == "Stable" && len(g.members) == n && assigned == g.partitions
}

func (g groupView) everyMemberOwns() bool {
	for _, owned := range g.members {
		if len(partitionNumbers(owned)) == 0 {
			return false
		}
	}
	return true
}

// ownership is g for a note: "3 and 3 of the 6 partitions of
// orders.commands (Stable)".
func (g groupView) ownership() string {
	owned := make([]int, 0, len(g.members))
	for _, set := range g.members {
		owned = append(owned, len(partitionNumbers(set)))
	}
	slices.Sort(owned)
	counts := make([]string, len(owned))
	for i, n := range owned {
		counts[i] = strconv.Itoa(n)
	}
	return fmt.Sprintf("%s of the %d partitions of %s (%s)", strings.Join(counts, " and "), g.partitions, strings.Join(g.topics, ", "), g.state)
}

// describeGroup describes group: who owns how many partitions of which topics.
func (s *stack) describeGroup(group string) (groupView, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	described, err := s.admin.DescribeGroups(ctx, group)
	if err != nil {
		return groupView{}, err
	}
	d, ok := described[group]
	if !ok {
		return groupView{}, fmt.Errorf("group %s not described", group)
	}
	if d.Err != nil {
		return groupView{}, fmt.Errorf("group %s: %w", group, d.Err)
	}
	g := groupView{state: d.State, members: map[string]kadm.TopicsSet{}}
	for _, m := range d.Members {
		owned := kadm.TopicsSet{}
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, at := range a.Topics {
				owned.Add(at.Topic, at.Partitions...)
			}
		}
		g.members[m.MemberID] = owned
		if j, ok := m.Join.AsConsumer(); ok {
			g.topics = append(g.topics, j.Topics...)
		}
	}
	slices.Sort(g.topics)
	g.topics = slices.Compact(g.topics)
	if len(g.topics) > 0 {
		details, err := s.admin.ListTopics(ctx, g.topics...)
		if err != nil {
			return groupView{}, err
		}
		for _, td := range details {
			g.partitions += len(td.Partitions)
		}
	}
	return g, nil
}

// awaitGroup describes group until ok holds (or bound runs out: an error
// naming the last description).
func (s *stack) awaitGroup(group string, bound time.Duration, ok func(groupView) bool) (groupView, error) {
	deadline := time.Now().Add(bound)
	for {
		g, err := s.describeGroup(group)
		if err == nil && ok(g) {
			return g, nil
		}
		if time.Now().After(deadline) {
			last := fmt.Sprintf("group %s after %s: %d members owning %s", group, bound, len(g.members), g.ownership())
			if err != nil {
				return g, fmt.Errorf("%s (%w)", last, err)
			}
			return g, errors.New(last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (s *stack) describeTransaction(txnID string) (kadm.DescribedTransaction, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	described, err := s.admin.DescribeTransactions(ctx, txnID)
	if err != nil {
		return kadm.DescribedTransaction{}, err
	}
	txn, ok := described[txnID]
	if !ok {
		return kadm.DescribedTransaction{}, fmt.Errorf("transaction %s not described", txnID)
	}
	return txn, txn.Err
}

// openTransactions describes every transaction open now, by transactional ID.
func (s *stack) openTransactions() (map[string]kadm.DescribedTransaction, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	listed, err := s.admin.ListTransactions(ctx, nil, []string{"Ongoing"})
	if err != nil {
		return nil, err
	}
	open := map[string]kadm.DescribedTransaction{}
	ids := listed.TransactionalIDs()
	if len(ids) == 0 {
		return open, nil
	}
	described, err := s.admin.DescribeTransactions(ctx, ids...)
	if err != nil {
		return nil, err
	}
	for id, txn := range described {
		if txn.Err == nil && txn.State == "Ongoing" {
			open[id] = txn
		}
	}
	return open, nil
}

// awaitOpenTransactions returns as soon as every member of the group has a
// transaction open that writes one of its partitions of txnTopic (or after
// bound): stopped then, the instance leaves one open, which must be aborted.
// Best effort — such a transaction is open for milliseconds at a time, so it
// polls the transactional IDs it listed (again every second) without a pause;
// what the stop caught is read again after it.
func (z *pause) awaitOpenTransactions(bound time.Duration) {
	ctx, cancel := context.WithTimeout(z.s.ctx, bound)
	defer cancel()
	var ids []string
	var listed time.Time
	for ctx.Err() == nil {
		if time.Since(listed) > time.Second {
			all, err := z.s.admin.ListTransactions(ctx, nil, nil)
			if err != nil {
				continue
			}
			ids, listed = all.TransactionalIDs(), time.Now()
		}
		if len(ids) == 0 {
			continue
		}
		described, err := z.s.admin.DescribeTransactions(ctx, ids...)
		if err != nil {
			continue
		}
		every := true
		for _, owned := range z.before.members {
			has := false
			for _, txn := range described {
				for _, p := range partitionNumbers(owned) {
					has = has || txn.Err == nil && txn.State == "Ongoing" && txn.Topics.Lookup(z.txnTopic, p)
				}
			}
			every = every && has
		}
		if every {
			return
		}
	}
}

// partitionNumbers are the partitions of set, of whichever topic.
func partitionNumbers(set kadm.TopicsSet) []int32 {
	var ps []int32
	set.Each(func(_ string, p int32) { ps = append(ps, p) })
	return ps
}

// procState is the state letter of /proc/<pid>/stat: R, S, D, T (stopped),
// Z…
func procState(pid int) (byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// "pid (comm) S …": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, fmt.Errorf("/proc/%d/stat unreadable: %q", pid, b)
	}
	return b[i+2], nil
}

// awaitProcState waits (up to bound) until pid's state satisfies ok.
func awaitProcState(pid int, ok func(byte) bool, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for {
		st, err := procState(pid)
		if err == nil && ok(st) {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.Join(fmt.Errorf("process %d in state %q after %s", pid, st, bound), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom returns the file at path from offset on.
func readFrom(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.NewSectionReader(f, offset, 1<<40))
	return string(b)
}
