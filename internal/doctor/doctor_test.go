package doctor

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fake is an Env with the given files and environment.
func fake(files map[string]string, env map[string]string, p Probe, tun, helper error) Env {
	return Env{
		ReadFile: func(path string) ([]byte, error) {
			if s, ok := files[path]; ok {
				return []byte(s), nil
			}
			return nil, os.ErrNotExist
		},
		Getenv:  func(k string) string { return env[k] },
		OpenTun: func() error { return tun },
		Probe:   func() Probe { return p },
		Helper:  func() error { return helper },
	}
}

func find(t *testing.T, fs []Finding, check string) Finding {
	t.Helper()
	for _, f := range fs {
		if f.Check == check {
			return f
		}
	}
	t.Fatalf("no %q finding in %+v", check, fs)
	return Finding{}
}

func TestUserNamespaceRefusals(t *testing.T) {
	refused := Probe{Clone: os.NewSyscallError("fork/exec", unix.EPERM)}
	for _, c := range []struct {
		name  string
		files map[string]string
		env   map[string]string
		want  string // in the fix
	}{
		{"max_user_namespaces 0", map[string]string{"/proc/sys/user/max_user_namespaces": "0\n"}, nil, "user.max_user_namespaces=15000"},
		{"AppArmor", map[string]string{"/proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n"}, nil, AppArmorProfile},
		{"Kubernetes", map[string]string{"/proc/self/uid_map": "         0          0 4294967295\n", "/proc/self/status": "Seccomp:\t2\n"},
			map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "hostUsers: false"},
		{"docker's seccomp", map[string]string{"/proc/self/status": "Name:\tnsrun\nSeccomp:\t2\nSeccomp_filters:\t1\n"}, nil, "--security-opt seccomp=" + SeccompProfile},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs := Check(fake(c.files, c.env, refused, nil, nil))
			f := find(t, fs, "user namespaces")
			if f.Status != Problem || !strings.Contains(f.Fix, c.want) {
				t.Errorf("got %+v, want a problem whose fix says %q", f, c.want)
			}
			var b bytes.Buffer
			if code := Print(&b, fs); code != 1 || !strings.Contains(b.String(), "FAIL  user namespaces") {
				t.Errorf("Print: exit %d:\n%s", code, b.String())
			}
		})
	}
}

func TestContainerNotes(t *testing.T) {
	p := Probe{MountProc: unix.EPERM, Sethostname: unix.EPERM, Netem: unix.ENOENT}
	fs := Check(fake(map[string]string{"/proc/self/status": "Seccomp:\t2\n"}, nil, p, unix.ENOENT, errors.New("not installed")))
	for check, fix := range map[string]string{
		"/proc":        "unmask=ALL",
		"hostname":     SeccompProfile,
		"qdisc netem":  "modprobe sch_netem",
		"/dev/net/tun": "--device /dev/net/tun",
		"helper":       "nsrun-helper install",
	} {
		if f := find(t, fs, check); f.Status != Note || !strings.Contains(f.Fix, fix) {
			t.Errorf("%s: got %+v, want a note whose fix says %q", check, f, fix)
		}
	}
	if f := find(t, fs, "qdisc tbf"); f.Status != OK {
		t.Errorf("tbf: %+v", f)
	}
	var b bytes.Buffer
	if code := Print(&b, fs); code != 0 {
		t.Errorf("notes only: exit %d, want 0:\n%s", code, b.String())
	}
}

func TestTunPermission(t *testing.T) {
	f := tun(&os.PathError{Op: "open", Path: "/dev/net/tun", Err: unix.EACCES})
	if f.Status != Note || !strings.Contains(f.Fix, "chmod 0666") {
		t.Errorf("%+v", f)
	}
}

func TestProbeErrorKeepsErrno(t *testing.T) {
	pe := toProbeError(os.NewSyscallError("mount", unix.EPERM))
	if !errors.Is(fromProbeError(pe), unix.EPERM) {
		t.Errorf("%v lost EPERM", pe)
	}
	if fromProbeError(toProbeError(nil)) != nil {
		t.Error("nil became an error")
	}
}
