package topology

import (
	"strings"
	"testing"
)

// TestProjectName: `name:` names the project as compose does; a name
// compose would refuse is refused at its line and column.
func TestProjectName(t *testing.T) {
	top, err := Parse("f.yaml", "/", []byte("name: my-cluster_2\nnodes:\n  a: {ip: 172.18.0.1}\n"))
	if err != nil || top.Name != "my-cluster_2" {
		t.Fatalf("name: %v, %+v", err, top)
	}
	if top, err := Parse("f.yaml", "/", []byte("nodes:\n  a: {ip: 172.18.0.1}\n")); err != nil || top.Name != "" {
		t.Errorf("no name: %v, %q", err, top.Name)
	}
	for _, bad := range []string{"My Cluster", "-x", "[a]", "é"} {
		_, err := Parse("f.yaml", "/", []byte("name: "+bad+"\nnodes:\n  a: {ip: 172.18.0.1}\n"))
		if err == nil || !strings.Contains(err.Error(), "f.yaml:1:7: name:") || !strings.Contains(err.Error(), "such as my-cluster") {
			t.Errorf("name: %s: %v", bad, err)
		}
	}
}
