package nspawn

import (
	"slices"
	"testing"
)

const (
	hybridMounts = `tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
`
	hybridSelf = `9:name=systemd:/
4:memory:/process_api/f32b
1:cpu:/
0::/
`
)

func TestCgroupParents(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		mounts, self string
		want         []string
		wantErr      bool
	}{
		{
			name:   "hybrid",
			mounts: hybridMounts, self: hybridSelf,
			want: []string{"/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"},
		},
		{
			name:   "unified",
			mounts: "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0\n",
			self:   "0::/user.slice/user-0.slice/session-3.scope\n",
			want:   []string{"/sys/fs/cgroup/user.slice/user-0.slice/session-3.scope"},
		},
		{
			name:   "legacy",
			mounts: "tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup /sys/fs/cgroup/systemd cgroup rw,xattr,name=systemd 0 0\ncgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0\n",
			self:   "3:pids:/a\n1:name=systemd:/system.slice/ci.service\n",
			want:   []string{"/sys/fs/cgroup/systemd/system.slice/ci.service"},
		},
		{
			name:   "cgroup2 elsewhere does not count",
			mounts: "cgroup2 /run/other cgroup2 rw 0 0\ncgroup /sys/fs/cgroup/systemd cgroup rw,name=systemd 0 0\n",
			self:   "1:name=systemd:/\n0::/\n",
			want:   []string{"/sys/fs/cgroup/systemd"},
		},
		{
			name:   "outside the namespace root",
			mounts: hybridMounts, self: "9:name=systemd:/../..\n0::/../..\n",
			wantErr: true,
		},
		{
			name:   "no hierarchy",
			mounts: "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n", self: "1:cpu:/\n",
			wantErr: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cgroupParents(tc.mounts, tc.self)
			if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
				t.Errorf("cgroupParents() = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestCgroupOwner(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		pid  int
		ok   bool
	}{
		{"baton-nspawn-1234-0a1b2c3d", 1234, true},
		{"baton-nspawn-1234", 0, false},
		{"baton-nspawn-0-aa", 0, false},
		{"baton-nspawn-x-aa", 0, false},
		{"system.slice", 0, false},
	} {
		if pid, ok := cgroupOwner(tc.name); pid != tc.pid || ok != tc.ok {
			t.Errorf("cgroupOwner(%q) = %d, %v; want %d, %v", tc.name, pid, ok, tc.pid, tc.ok)
		}
	}
}

func TestParseShow(t *testing.T) {
	t.Parallel()
	got := parseShow("MainPID=42\nExecStart={ path=/bin/sh ; argv[]=/bin/sh -c a=b }\nResult=success\nnoise")
	want := map[string]string{
		"MainPID":   "42",
		"ExecStart": "{ path=/bin/sh ; argv[]=/bin/sh -c a=b }",
		"Result":    "success",
	}
	if len(got) != len(want) {
		t.Errorf("parseShow: %d properties %q; want %d", len(got), got, len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("parseShow: %s=%q; want %q", k, got[k], v)
		}
	}
}
