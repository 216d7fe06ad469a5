package test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// reportYAML: five nodes; n2 annotates through $NSRUN_EVENTS (bash's
// /dev/udp; $$ keeps the file's interpolation off it), n5 exits with 3;
// the schedule cuts, heals, sets link faults and pauses.
const reportYAML = `
nodes:
  n1: {ip: 172.18.0.1, command: "sleep 5"}
  n2: {ip: 172.18.0.2, command: "bash -c 'sleep 1; echo leader=n2 > /dev/udp/$${NSRUN_EVENTS/://}; sleep 4'"}
  n3: {ip: 172.18.0.3, command: "sleep 5"}
  n4: {ip: 172.18.0.4, command: "sleep 5"}
  n5: {ip: 172.18.0.5, command: "sh -c 'sleep 3; exit 3'"}
faults:
  seed: 3
  schedule:
    - {at: 500ms, do: net isolate n3}
    - {at: 1500ms, do: net fullmesh}
    - {at: 1700ms, do: net flaky n4 --loss 30%}
    - {at: 2s, do: node pause n1}
    - {at: 2500ms, do: node resume n1}
    - {at: 3s, do: net halves}
`

// TestReportAnnotationChromium: an annotation written by a node lands in
// events.jsonl and in the report that up --report writes; the report
// loads nothing from anywhere, renders in headless chromium with a lane
// per node, the partition, the steps and the annotation (read back from
// the DOM chromium built), and nsrun report DIR draws it again.
func TestReportAnnotationChromium(t *testing.T) {
	u := unprivileged(t)
	userNamespaces(t, u)
	needPrograms(t, "bash")
	chromium, err := exec.LookPath("chromium")
	need(t, err == nil, "chromium is not installed (.ci/run installs it from Debian's packages)")
	dir := project(t, map[string]string{"nsrun.yaml": reportYAML})
	rep := ownedDir(t, u, filepath.Join(dir, "rep"))
	r := u.up(t, dir, "--timeout", "1", "--report", rep)
	if r.Code != 0 || !strings.Contains(r.Stdout, "report: "+filepath.Join(rep, "report.html")) {
		t.Fatalf("up --report: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if !strings.Contains(r.Stdout, "n2 note: leader=n2") {
		t.Errorf("the annotation is not in up's output:\n%s", r.Stdout)
	}
	// events.jsonl: the annotation, of n2, between the run's up and n5's exit.
	data, err := os.ReadFile(filepath.Join(rep, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	var note, steps int
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var e struct {
			Kind, Node, Text, Verb string
		}
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("events.jsonl: %q: %v", line, err)
		}
		kinds = append(kinds, e.Kind)
		if e.Kind == "annotation" && e.Node == "n2" && e.Text == "leader=n2" {
			note++
		}
		if e.Kind == "fault-step" && e.Verb != "" {
			steps++
		}
	}
	if note != 1 || steps != 6 {
		t.Errorf("events.jsonl: %d annotations leader=n2 of n2 (want 1), %d fault steps (want 6): %v", note, steps, kinds)
	}
	page, err := os.ReadFile(filepath.Join(rep, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"<script", "src=", "href=", "@import", "url(", "<link"} {
		if bytes.Contains(page, []byte(bad)) {
			t.Errorf("report.html holds %q: it must load nothing", bad)
		}
	}
	// Headless chromium, no network: the DOM it built, and a screenshot.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	profile := t.TempDir()
	flags := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
		"--user-data-dir=" + profile, "--window-size=1400,1000"}
	url := "file://" + filepath.Join(rep, "report.html")
	dom, err := exec.CommandContext(ctx, chromium, append(flags, "--dump-dom", url)...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	for _, want := range []string{`data-lane="n1"`, `data-lane="n5"`, `data-lane="partition"`, `data-lane="fault steps"`,
		`data-lane="annotations"`, "n2: leader=n2", "net isolate n3", "{n1 n2 n4 n5}", "exit 3", "loss 30%", "paused"} {
		if !strings.Contains(string(dom), want) {
			t.Errorf("the DOM chromium built has no %q", want)
		}
	}
	shot := filepath.Join(os.Getenv("NSRUN_REPORT_SHOT_DIR"), "report.png")
	if os.Getenv("NSRUN_REPORT_SHOT_DIR") == "" {
		shot = filepath.Join(t.TempDir(), "report.png")
	}
	if out, err := exec.CommandContext(ctx, chromium, append(flags, "--screenshot="+shot, url)...).CombinedOutput(); err != nil {
		t.Fatalf("chromium --screenshot: %v\n%s", err, out)
	}
	if st, err := os.Stat(shot); err != nil || st.Size() < 10000 {
		t.Errorf("screenshot %s: %v (%d bytes)", shot, err, sizeOf(st))
	}
	// nsrun report DIR draws the same events again.
	if err := os.Remove(filepath.Join(rep, "report.html")); err != nil {
		t.Fatal(err)
	}
	out := nsrunOK(t, u, "report", rep)
	again, err := os.ReadFile(filepath.Join(rep, "report.html"))
	if err != nil || !bytes.Contains(again, []byte("n2: leader=n2")) {
		t.Errorf("nsrun report %s: %q, %v", rep, out, err)
	}
}

func sizeOf(st os.FileInfo) int64 {
	if st == nil {
		return 0
	}
	return st.Size()
}
