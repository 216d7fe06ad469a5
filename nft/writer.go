package nft

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// Limits of one netlink batch. An unprivileged process cannot raise its
// socket buffers past net.core.wmem_max and rmem_max (SO_SNDBUFFORCE
// needs CAP_NET_ADMIN in the initial namespace), and google/nftables
// v0.3.0 sends a batch in one sendmsg and asks the kernel to acknowledge
// every message of it: a batch larger than the send buffer fails with
// "message too long", and one of more messages than the receive buffer
// holds acknowledgements for fails with "no buffer space available"
// (after the kernel has committed it). A set's elements are also one
// netlink attribute, at most 64 KiB.
const (
	batchBytes    = 96 << 10
	batchMessages = 100
	elemBytes     = 32 << 10
)

// Writer keeps whole tables in one network namespace up to date however
// large they are, and switches every rule of every table at the same
// instant. Each Apply makes a new generation: the tables' named sets and
// regular chains under names of their own (classes_7, fwd_7), filled in
// as many batches as they take while nothing refers to them yet; then one
// small transaction points every base chain at the new regular chains and
// deletes the previous generation. A table's base chains must have an
// accept policy and only jump to its regular chains.
//
// A Writer is not safe for concurrent use.
type Writer struct {
	ns  *os.File
	gen int
	// made are the tables whose base chains exist, by familyName + name.
	made map[string]bool
}

// object is a named set or a regular chain of a table.
type object struct {
	table *nftables.Table
	name  string
	chain bool
}

// Stats says what one Apply took.
type Stats struct {
	Batches  int           // netlink transactions, the switch included
	Messages int           // netlink messages in all
	Switch   time.Duration // the switching transaction alone
}

// NewWriter makes the writer of the network namespace of ns (nil: the
// current one), which the caller keeps open.
func NewWriter(ns *os.File) *Writer { return &Writer{ns: ns, made: map[string]bool{}} }

// batcher sends queued messages in batches within the limits.
type batcher struct {
	c           *nftables.Conn
	bytes, msgs int
	stats       *Stats
	what        string
}

// add accounts for a unit of msgs messages of about bytes bytes, which
// queue adds to the connection, flushing first when it would not fit.
func (b *batcher) add(msgs, bytes int, queue func() error) error {
	if b.msgs > 0 && (b.msgs+msgs > batchMessages || b.bytes+bytes > batchBytes) {
		if err := b.flush(); err != nil {
			return err
		}
	}
	b.msgs += msgs
	b.bytes += bytes
	return queue()
}

func (b *batcher) flush() error {
	if b.msgs == 0 {
		return nil
	}
	b.stats.Batches++
	b.stats.Messages += b.msgs
	b.msgs, b.bytes = 0, 0
	if err := b.c.Flush(); err != nil {
		return fmt.Errorf("write nftables tables %s: %w", b.what, err)
	}
	return nil
}

// Apply replaces the tables with ts (see Writer).
func (w *Writer) Apply(ts ...*Table) (Stats, error) {
	var st Stats
	for _, t := range ts {
		for _, ch := range t.Chains {
			if ch.Hook != nil && (ch.Drop || !jumpsOnly(ch)) {
				return st, fmt.Errorf("nftables table %s %s: base chain %s must accept and only jump (Writer)", familyName(t.Family), t.Name, ch.Name)
			}
		}
	}
	c, err := conn(w.ns)
	if err != nil {
		return st, err
	}
	defer c.CloseLasting()
	var names []string
	for _, t := range ts {
		names = append(names, familyName(t.Family)+" "+t.Name)
	}
	b := &batcher{c: c, stats: &st, what: strings.Join(names, ", ")}
	// What the switch deletes is read from the kernel, not remembered:
	// every generation's set and regular chain in the tables, so that
	// one left by an apply that failed half-way (or whose outcome the
	// kernel did not acknowledge) goes with the next switch.
	var old []object
	for _, t := range ts {
		if !w.made[familyName(t.Family)+" "+t.Name] {
			continue
		}
		objs, err := generations(c, &nftables.Table{Family: t.Family, Name: t.Name})
		if err != nil {
			return st, err
		}
		old = append(old, objs...)
	}
	w.gen++
	suffix := fmt.Sprintf("_%d", w.gen)
	var made []object
	fail := func(err error) (Stats, error) {
		// Nothing refers to the new generation: remove what of it was
		// made, so that a failed verb leaves the tables as they were.
		// One object a transaction: those of a batch that failed do not
		// exist, and one missing object would fail the others' deletion.
		if c2, cerr := conn(w.ns); cerr == nil {
			defer c2.CloseLasting()
			for _, chains := range []bool{true, false} { // chains release the sets
				for _, o := range made {
					if o.chain == chains {
						del(c2, []object{o})
						_ = c2.Flush()
					}
				}
			}
		}
		return st, err
	}
	// Fill: tables and base chains the first time (empty, accepting),
	// then the generation's sets and regular chains.
	for _, t := range ts {
		nt := &nftables.Table{Family: t.Family, Name: t.Name}
		key := familyName(t.Family) + " " + t.Name
		if !w.made[key] {
			var bases []Chain
			for _, ch := range t.Chains {
				if ch.Hook != nil {
					bases = append(bases, ch)
				}
			}
			if err := b.add(2+len(bases), 200*(2+len(bases)), func() error {
				c.AddTable(nt)
				c.DelTable(nt)
				c.AddTable(nt)
				for _, ch := range bases {
					c.AddChain(Chain{Name: ch.Name, Type: ch.Type, Hook: ch.Hook, Priority: ch.Priority}.nft(nt))
				}
				return nil
			}); err != nil {
				return fail(err)
			}
		}
		named := map[string]*nftables.Set{}
		for _, ns := range t.Sets {
			ns.Name += suffix
			set := ns.set(nt)
			if err := b.add(1, 300, func() error { return c.AddSet(set, nil) }); err != nil {
				return fail(err)
			}
			made = append(made, object{table: nt, name: set.Name})
			named[strings.TrimSuffix(set.Name, suffix)] = set
			per := max(1, elemBytes/ns.elementSize())
			for i := 0; i < len(ns.Keys); i += per {
				j := min(len(ns.Keys), i+per)
				if err := b.add(1, (j-i)*ns.elementSize()+100, func() error { return c.SetAddElements(set, ns.elements(i, j)) }); err != nil {
					return fail(err)
				}
			}
		}
		for _, ch := range t.Chains {
			if ch.Hook != nil {
				continue
			}
			nc := &nftables.Chain{Name: ch.Name + suffix, Table: nt}
			if err := b.add(1, 200, func() error { c.AddChain(nc); return nil }); err != nil {
				return fail(err)
			}
			made = append(made, object{table: nt, name: nc.Name, chain: true})
			for _, r := range ch.Rules {
				r := r
				r.Exprs = renamed(r.Exprs, named, suffix)
				size := 200 + 80*len(r.Exprs)
				for _, as := range r.Sets {
					size += 300 + 40*len(as.Keys)
				}
				if err := b.add(1+2*len(r.Sets), size, func() error { return addRule(c, nt, nc, r, nil) }); err != nil {
					return fail(err)
				}
			}
		}
	}
	// Switch: one transaction, however large the fill was (the fill
	// already sent is committed but unreferenced).
	var sw []func()
	msgs := 0
	for _, t := range ts {
		nt := &nftables.Table{Family: t.Family, Name: t.Name}
		for _, ch := range t.Chains {
			if ch.Hook == nil {
				continue
			}
			nc := Chain{Name: ch.Name, Type: ch.Type, Hook: ch.Hook, Priority: ch.Priority}.nft(nt)
			rules := ch.Rules
			sw = append(sw, func() {
				c.FlushChain(nc)
				for _, r := range rules {
					c.AddRule(&nftables.Rule{Table: nt, Chain: nc, Exprs: renamed(r.Exprs, nil, suffix)})
				}
			})
			msgs += 1 + len(rules)
		}
	}
	msgs += len(old)
	if b.msgs > 0 && (b.msgs+msgs > batchMessages || b.bytes+200*msgs > batchBytes) {
		if err := b.flush(); err != nil {
			return fail(err)
		}
	}
	for _, f := range sw {
		f()
	}
	del(c, old)
	b.msgs += msgs
	b.bytes += 200 * msgs
	start := time.Now()
	if err := b.flush(); err != nil {
		return fail(err)
	}
	st.Switch = time.Since(start)
	for _, t := range ts {
		w.made[familyName(t.Family)+" "+t.Name] = true
	}
	return st, nil
}

// generations lists the sets and regular chains of table t that a Writer
// made: those whose names end in _GENERATION.
func generations(c *nftables.Conn, t *nftables.Table) ([]object, error) {
	var out []object
	sets, err := c.GetSets(t)
	if err != nil {
		return nil, fmt.Errorf("list nftables sets of %s %s: %w", familyName(t.Family), t.Name, err)
	}
	for _, s := range sets {
		if generated(s.Name) {
			out = append(out, object{table: t, name: s.Name})
		}
	}
	chains, err := c.ListChainsOfTableFamily(t.Family)
	if err != nil {
		return nil, fmt.Errorf("list nftables chains of %s %s: %w", familyName(t.Family), t.Name, err)
	}
	for _, ch := range chains {
		if ch.Table.Name == t.Name && ch.Hooknum == nil && generated(ch.Name) {
			out = append(out, object{table: t, name: ch.Name, chain: true})
		}
	}
	return out, nil
}

// generated reports whether name ends in _ and a generation number.
func generated(name string) bool {
	i := strings.LastIndexByte(name, '_')
	return i > 0 && i < len(name)-1 && strings.Trim(name[i+1:], "0123456789") == ""
}

// del queues the deletion of objs: the chains first (with their rules,
// which release the sets), then the sets.
func del(c *nftables.Conn, objs []object) {
	for _, o := range objs {
		if o.chain {
			c.DelChain(&nftables.Chain{Name: o.name, Table: o.table})
		}
	}
	for _, o := range objs {
		if !o.chain {
			c.DelSet(&nftables.Set{Name: o.name, Table: o.table})
		}
	}
}

// jumpsOnly reports whether every rule of ch only jumps.
func jumpsOnly(ch Chain) bool {
	for _, r := range ch.Rules {
		if len(r.Exprs) != 1 || len(r.Sets) != 0 {
			return false
		}
		if v, ok := r.Exprs[0].(*expr.Verdict); !ok || v.Kind != expr.VerdictJump {
			return false
		}
	}
	return true
}

// renamed returns exprs with the names of named sets and of jumps'
// chains given the generation's suffix; named gives the sets' ids.
func renamed(exprs []expr.Any, named map[string]*nftables.Set, suffix string) []expr.Any {
	out := make([]expr.Any, len(exprs))
	for i, e := range exprs {
		switch e := e.(type) {
		case *expr.Lookup:
			if e.SetName != "" {
				cp := *e
				cp.SetName += suffix
				if s := named[e.SetName]; s != nil {
					cp.SetID = s.ID
				}
				out[i] = &cp
				continue
			}
		case *expr.Verdict:
			if e.Chain != "" {
				cp := *e
				cp.Chain += suffix
				out[i] = &cp
				continue
			}
		}
		out[i] = e
	}
	return out
}

// Delete removes the writer's tables ts (by family and name) from its
// namespace, whatever generation they are at.
func (w *Writer) Delete(ts ...*Table) error {
	var errs []error
	for _, t := range ts {
		if err := Delete(w.ns, t.Family, t.Name); err != nil {
			errs = append(errs, err)
		}
		delete(w.made, familyName(t.Family)+" "+t.Name)
	}
	return errors.Join(errs...)
}
