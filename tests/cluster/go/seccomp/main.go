// Command seccomp writes the Localhost seccomp profile of runner and browser pods:
// containerd's RuntimeDefault profile for a container whose capabilities are all
// dropped, plus the few syscalls bubblewrap (runner pods) and Chromium's own sandbox
// (browser pods) need to build their sandboxes (tests/cluster/README.md explains each). Deriving it from containerd's own default keeps every other rule of
// RuntimeDefault, and regenerating after a containerd upgrade picks up its changes.
//
//	go run . > ../../../../helm/seccomp/runner-seccomp.json
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// bwrapSyscalls are allowed with no argument filter; everything they can do outside a
// namespace of the caller's own still needs a capability, and the pod has none.
var bwrapSyscalls = []string{
	"mount",       // bind mounts, --proc, --dev, --tmpfs and the read-only remounts
	"pivot_root",  // swaps the pod's root for the sandbox's new root
	"sethostname", // --hostname, inside the sandbox's own UTS namespace
	"umount2",     // detaches the old root after pivot_root
	"unshare",     // --disable-userns and the mount namespace of the setup
	// Chromium's namespace sandbox chroots each sandboxed process into an empty
	// directory inside the user namespace it made; RuntimeDefault allows chroot only
	// with CAP_SYS_CHROOT, which the pod never has outside such a namespace.
	"chroot",
}

func main() {
	// No capabilities: the pod drops ALL, so none of the capability-gated groups apply.
	spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}
	profile := seccomp.DefaultProfile(spec)

	found := false
	for i, rule := range profile.Syscalls {
		// RuntimeDefault allows clone only without CLONE_NEW* flags (a masked-equal
		// argument filter); bwrap creates its namespaces with exactly those flags.
		if slices.Equal(rule.Names, []string{"clone"}) && len(rule.Args) > 0 {
			profile.Syscalls[i].Args = nil
			found = true
		}
	}
	if !found {
		fmt.Fprintln(os.Stderr, "containerd's default profile has no filtered clone rule any more")
		os.Exit(1)
	}
	profile.Syscalls = append(profile.Syscalls, specs.LinuxSyscall{
		Names:  bwrapSyscalls,
		Action: specs.ActAllow,
	})

	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	if err := out.Encode(profile); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
