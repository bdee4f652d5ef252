package relay

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// fsSyncer returns a function that flushes every write of the filesystem
// holding dir to stable storage (syncfs(2)): the store's message blocks,
// however JetStream has rotated, compacted or renamed them.
func fsSyncer(dir string) (sync func() error, closeFn func() error, err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("open storage dir for syncing: %w", err)
	}
	fd := int(f.Fd())
	sync = func() error {
		if err := unix.Syncfs(fd); err != nil {
			return fmt.Errorf("syncfs %s: %w", dir, err)
		}
		return nil
	}
	return sync, f.Close, nil
}
