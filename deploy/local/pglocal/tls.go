package pglocal

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Files of Options.TLS in the data folder.
const (
	caCertFile     = "ca.crt"     // the cluster's own certificate authority (its key is not kept)
	serverCertFile = "server.crt" // the server's certificate, signed by it
	serverKeyFile  = "server.key" // the server's key
)

const (
	certValidity = 365 * 24 * time.Hour
	// certRenewal: a certificate expiring sooner is made anew at Start.
	certRenewal = 7 * 24 * time.Hour
)

// CAFile is the PEM certificate of the authority that signed the server's
// certificate, for sslrootcert; "" when the cluster runs without TLS.
func (s *Server) CAFile() string {
	if !s.opts.TLS {
		return ""
	}
	return filepath.Join(s.dataDir(), caCertFile)
}

// runsWithTLS reports whether the running postmaster was started with ssl=on
// (its command line is in postmaster.opts).
func (s *Server) runsWithTLS() bool {
	raw, err := os.ReadFile(filepath.Join(s.dataDir(), "postmaster.opts"))
	return err == nil && strings.Contains(string(raw), "ssl=on")
}

// ensureTLSFiles writes a new authority and server certificate into the data
// folder unless valid ones, for 127.0.0.1 and localhost and beyond
// now+certRenewal, are there already.
func (s *Server) ensureTLSFiles(now time.Time) error {
	data := s.dataDir()
	if tlsFilesValid(data, now) {
		return nil
	}
	files, err := newTLSFiles(now)
	if err != nil {
		return fmt.Errorf("pglocal: TLS certificate: %w", err)
	}
	for _, f := range files {
		if err := s.writePrivate(filepath.Join(data, f.name), f.pem); err != nil {
			return fmt.Errorf("pglocal: TLS certificate: %w", err)
		}
	}
	return nil
}

// writePrivate replaces path by content, mode 0600, owned by the server's user.
func (s *Server) writePrivate(path string, content []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, content, 0o600); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil { // an older tmp file kept its mode
		return err
	}
	if err := s.chown(tmp); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func tlsFilesValid(data string, now time.Time) bool {
	caPEM, err := os.ReadFile(filepath.Join(data, caCertFile))
	if err != nil {
		return false
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(data, serverCertFile), filepath.Join(data, serverKeyFile))
	if err != nil {
		return false
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return false
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return false
	}
	for _, name := range []string{"127.0.0.1", "localhost"} {
		opts := x509.VerifyOptions{Roots: roots, DNSName: name, CurrentTime: now.Add(certRenewal), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		if _, err := leaf.Verify(opts); err != nil {
			return false
		}
	}
	return true
}

type pemFile struct {
	name string
	pem  []byte
}

// newTLSFiles makes a certificate authority and a server certificate for
// 127.0.0.1, ::1 and localhost signed by it, valid from now for
// certValidity. The authority's key is dropped: nothing else is ever signed.
func newTLSFiles(now time.Time) ([]pemFile, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Answerback pglocal CA", Organization: []string{"Answerback (development)"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "localhost", Organization: []string{"Answerback (development)"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return []pemFile{
		{caCertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})},
		{serverKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})},
		{serverCertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
	}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}
