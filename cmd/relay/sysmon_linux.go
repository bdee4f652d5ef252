package main

import (
	"os"
	"syscall"
)

// quietSysmon re-executes the running binary with sysmonSetting in GODEBUG
// (see sysmon.go) unless GODEBUG already sets schedtrace. The process keeps
// its id, arguments, open standard streams and the rest of its
// environment. It returns only when it did not re-execute: nothing to do,
// or the exec failed (the relay then runs with the runtime's default).
func quietSysmon() {
	env, ok := sysmonEnv(os.Environ())
	if !ok {
		return
	}
	// /proc/self/exe is the running image even if its file was replaced or
	// removed since (an upgrade in place, go run's temporary build).
	_ = syscall.Exec("/proc/self/exe", os.Args, env)
}
