//go:build unix

package relay

import "golang.org/x/sys/unix"

// diskSpace returns the bytes free for an unprivileged writer and the size
// of the filesystem holding dir.
func diskSpace(dir string) (free, total uint64, ok bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, false
	}
	bsize := uint64(st.Bsize)
	return st.Bavail * bsize, st.Blocks * bsize, true
}
