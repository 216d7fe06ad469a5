package faults_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nsrun/nsrun/internal/control"
	"github.com/nsrun/nsrun/internal/faults"
)

// nullClient does nothing: the benchmark measures the schedule's own work.
type nullClient struct{}

func (nullClient) Net(control.NetCall) (string, control.NetState, error) {
	return "", control.NetState{}, nil
}
func (nullClient) Node(control.NodeCall) error { return nil }

// BenchmarkScheduleStep is the schedule's own overhead per step at 100
// nodes: drawing the step, resolving random, parsing the verb line with
// the command line's parser (node names checked), its heal, and running
// it (timer, state, event), with a client that does nothing. make bench
// reports it; the bound is 5 ms.
func BenchmarkScheduleStep(b *testing.B) {
	nodes := make([]string, 100)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("n%d", i+1)
	}
	const steps = 1000
	yaml := fmt.Sprintf("seed: 1\nrandom:\n  every: 1us\n  for: %dus\n  pick: [net halves, net majorities-ring, net isolate random, node pause random, node restart random, net flaky random --loss 30%%]\n", steps)
	s, err := compile(b, yaml, nodes)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var n int
	for b.Loop() {
		seq, err := s.Sequence(uint64(n + 1))
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Run(context.Background(), nullClient{}, seq, false, func(faults.Event) {}); err != nil {
			b.Fatal(err)
		}
		n += len(seq)
	}
	perStep := b.Elapsed() / time.Duration(max(n, 1))
	b.ReportMetric(float64(perStep.Nanoseconds()), "ns/step")
	if perStep > 5*time.Millisecond {
		b.Errorf("%s per step at 100 nodes; the bound is 5ms", perStep)
	}
}

// TestScheduleStepUnder5ms holds the bound in the unit tests too, with
// a margin for a loaded machine: 200 steps at 100 nodes.
func TestScheduleStepUnder5ms(t *testing.T) {
	r := testing.Benchmark(func(b *testing.B) {
		nodes := make([]string, 100)
		for i := range nodes {
			nodes[i] = fmt.Sprintf("n%d", i+1)
		}
		s, err := compile(b, "seed: 1\nrandom: {every: 1us, for: 200us, pick: [net halves, net isolate random, node pause random]}", nodes)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			seq, _ := s.Sequence(1)
			_ = s.Run(context.Background(), nullClient{}, seq, false, func(faults.Event) {})
		}
	})
	if per := time.Duration(r.NsPerOp()) / 200; per > 5*time.Millisecond {
		t.Errorf("%s per step at 100 nodes; the bound is 5ms", per)
	} else {
		t.Logf("%s per step at 100 nodes (%s)", per, strings.TrimSpace(r.String()))
	}
}
