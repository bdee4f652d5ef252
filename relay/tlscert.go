package relay

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
)

// TLSConfig names a listener's certificate and key (PEM files).
type TLSConfig struct {
	CertFile string `koanf:"cert_file"`
	KeyFile  string `koanf:"key_file"`
}

// Enabled reports whether the listener serves TLS.
func (c TLSConfig) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" }

// certSource serves a listener's certificate and replaces it when the files
// are read again (on reload): handshakes after the swap use the new
// certificate, connections already open keep theirs.
type certSource struct {
	cert atomic.Pointer[tls.Certificate]
}

// readCert reads a listener's certificate and key; p is the config path
// of the block, for errors.
func readCert(p string, c TLSConfig) (*tls.Certificate, error) {
	if c.CertFile == "" || c.KeyFile == "" {
		return nil, fmt.Errorf("%s: cert_file and key_file are both required", p)
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &cert, nil
}

// tlsConfig is the listener's TLS configuration, reading the current
// certificate at each handshake.
func (cs *certSource) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return cs.cert.Load(), nil
		},
	}
}
