//go:build !linux

package relay

import "errors"

// fsSyncer is only available on Linux; elsewhere the embedded server syncs
// every write itself (JetStream's SyncAlways).
func fsSyncer(string) (func() error, func() error, error) {
	return nil, nil, errors.New("syncfs is not available on this system")
}
