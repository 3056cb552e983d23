// Package pglocal runs a private PostgreSQL cluster from the machine's
// installed server binaries: initdb into a folder of the project's, a
// loopback port and a socket directory of its own. It never touches a system
// cluster. When the server binaries are missing and the process runs as root
// on Debian, they are installed from Debian's packages with apt-get.
//
// PostgreSQL refuses to run as root; when the caller is root the server runs
// as the unprivileged user Options.OSUser (created when missing).
package pglocal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNoServer reports a machine without PostgreSQL server binaries that this
// process may not install.
var ErrNoServer = errors.New("pglocal: PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; install Debian's postgresql package (apt-get install postgresql) or set DATABASE_URL")

// Options describe a private cluster.
type Options struct {
	// Dir holds the cluster: data/, socket/ and postgres.log.
	Dir string
	// Port is the loopback TCP port; default 15432.
	Port int
	// Durable keeps fsync and synchronous commit on. Off by default: the
	// clusters this package starts are for tests and development.
	Durable bool
	// OSUser runs the server when the caller is root; default "postgres".
	OSUser string
	// Install allows apt-get to install the server when it is missing (root only).
	Install bool
	// TLS turns on TLS (ssl = on) with a certificate for 127.0.0.1 and
	// localhost, signed by a certificate authority of the cluster's own. Both
	// are made on first use and kept in the data folder (ca.crt, server.crt,
	// server.key, mode 0600); clients verify the server with
	// sslmode=verify-full&sslrootcert=<Server.CAFile()>, as DSN does.
	// Connections without TLS are still accepted.
	TLS bool
}

// Server is a running private cluster.
type Server struct {
	opts Options
	bin  string
	cred *syscall.Credential
}

// DSN returns a connection string for database db (default "postgres") as
// the superuser "postgres": without TLS, or with TLS verifying the server
// against CAFile when the cluster runs with Options.TLS.
func (s *Server) DSN(db string) string {
	if db == "" {
		db = "postgres"
	}
	if s.opts.TLS {
		return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=verify-full&sslrootcert=%s", s.opts.Port, db, url.QueryEscape(s.CAFile()))
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.opts.Port, db)
}

// Port is the server's TCP port.
func (s *Server) Port() int { return s.opts.Port }

// Pid returns the postmaster's process ID (from postmaster.pid), 0 when
// the server is not running.
func (s *Server) Pid() int {
	raw, err := os.ReadFile(filepath.Join(s.dataDir(), "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(raw), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(first))
	return pid
}

// LogPath is the server's log file.
func (s *Server) LogPath() string { return filepath.Join(s.opts.Dir, "postgres.log") }

// BinDir is the folder of the server binaries in use.
func (s *Server) BinDir() string { return s.bin }

// Start initialises the cluster when Dir is new and starts it, waiting until
// it accepts connections. A cluster already running in Dir is reused.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("pglocal: Dir is required")
	}
	if opts.Port == 0 {
		opts.Port = 15432
	}
	if opts.OSUser == "" {
		opts.OSUser = "postgres"
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	opts.Dir = dir
	bin, err := FindServer(ctx, opts.Install)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, bin: bin}
	if os.Geteuid() == 0 {
		if s.cred, err = unprivileged(ctx, opts.OSUser); err != nil {
			return nil, err
		}
		s.opts.Dir = reachableDir(opts.Dir)
	}
	if err := s.initdb(ctx); err != nil {
		return nil, err
	}
	if s.running(ctx) {
		if opts.TLS && !s.runsWithTLS() {
			return nil, fmt.Errorf("pglocal: the cluster running in %s was started without TLS; stop it (pglocal.StopDir) to start it with TLS", s.opts.Dir)
		}
		return s, nil
	}
	if err := portFree(opts.Port); err != nil {
		return nil, err
	}
	if opts.TLS {
		if err := s.ensureTLSFiles(time.Now()); err != nil {
			return nil, err
		}
	}
	settings := []string{
		"-p " + strconv.Itoa(opts.Port),
		"-k " + filepath.Join(s.opts.Dir, "socket"),
		"-c listen_addresses=127.0.0.1",
		"-c max_connections=300",
		"-c shared_buffers=256MB",
	}
	if !opts.Durable {
		settings = append(settings, "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off")
	}
	if opts.TLS { // file names relative to the data folder
		settings = append(settings, "-c ssl=on", "-c ssl_cert_file="+serverCertFile, "-c ssl_key_file="+serverKeyFile, "-c ssl_min_protocol_version=TLSv1.2")
	}
	out, err := s.run(ctx, "pg_ctl", "start", "-w", "-t", "60", "-D", s.dataDir(), "-l", s.LogPath(), "-o", strings.Join(settings, " "))
	if err != nil {
		return nil, fmt.Errorf("pglocal: pg_ctl start: %w\n%s\n(log: %s)", err, out, s.LogPath())
	}
	return s, nil
}

// Stop stops the server (fast shutdown: open sessions are rolled back). Data is kept.
func (s *Server) Stop(ctx context.Context) error {
	if !s.running(ctx) {
		return nil
	}
	out, err := s.run(ctx, "pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", s.dataDir())
	if err != nil {
		return fmt.Errorf("pglocal: pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// StopDir stops the cluster in dir if one runs there.
func StopDir(ctx context.Context, dir string) error {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	s := &Server{opts: Options{Dir: dir}}
	if os.Geteuid() == 0 {
		s.opts.Dir = reachableDir(dir)
	}
	bin, err := FindServer(ctx, false)
	if err != nil {
		return nil // no server binaries: nothing can be running
	}
	s.bin = bin
	if os.Geteuid() == 0 {
		s.cred, _ = unprivileged(ctx, "postgres")
	}
	return s.Stop(ctx)
}

func (s *Server) dataDir() string { return filepath.Join(s.opts.Dir, "data") }

func (s *Server) running(ctx context.Context) bool {
	_, err := s.run(ctx, "pg_ctl", "status", "-D", s.dataDir())
	return err == nil
}

func (s *Server) initdb(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(s.dataDir(), "PG_VERSION")); err == nil {
		return nil
	}
	for _, d := range []string{s.opts.Dir, filepath.Join(s.opts.Dir, "socket")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := s.chown(d); err != nil {
			return err
		}
	}
	out, err := s.run(ctx, "initdb", "-D", s.dataDir(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	if err != nil {
		return fmt.Errorf("pglocal: initdb: %w\n%s", err, out)
	}
	return nil
}

func (s *Server) chown(path string) error {
	if s.cred == nil {
		return nil
	}
	return os.Chown(path, int(s.cred.Uid), int(s.cred.Gid))
}

func (s *Server) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.Dir = s.opts.Dir
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd.CombinedOutput()
}

// FindServer returns the folder holding initdb, pg_ctl and postgres: the one
// on PATH, else the newest under /usr/lib/postgresql. When none is found and
// install is true and the process is root on a machine with apt-get, Debian's
// postgresql package is installed first (without creating its default cluster).
func FindServer(ctx context.Context, install bool) (string, error) {
	if dir := findServer(); dir != "" {
		return dir, nil
	}
	if !install {
		return "", ErrNoServer
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("%w (not root, so not installing it)", ErrNoServer)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return "", fmt.Errorf("%w (no apt-get on this machine)", ErrNoServer)
	}
	if err := aptInstallPostgres(ctx); err != nil {
		return "", err
	}
	if dir := findServer(); dir != "" {
		return dir, nil
	}
	return "", ErrNoServer
}

func findServer() string {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	sort.Slice(matches, func(i, j int) bool { return pgMajor(matches[i]) > pgMajor(matches[j]) })
	if len(matches) > 0 {
		return filepath.Dir(matches[0])
	}
	return ""
}

func pgMajor(path string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return n
}

func aptInstallPostgres(ctx context.Context) error {
	// Keep the package from creating and starting a system cluster: this
	// project only ever runs private ones.
	conf := "/etc/postgresql-common/createcluster.conf"
	if _, err := os.Stat(conf); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(conf), 0o755); err == nil {
			_ = os.WriteFile(conf, []byte("create_main_cluster = false\n"), 0o644)
		}
	}
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{
		{"update"},
		{"install", "-y", "--no-install-recommends", "-o", "Dpkg::Options::=--force-confold", "postgresql"},
	} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("pglocal: apt-get %s: %w\n%s", args[0], err, out)
		}
	}
	return nil
}

// unprivileged returns the credentials of osUser, creating it as a system user when missing.
func unprivileged(ctx context.Context, osUser string) (*syscall.Credential, error) {
	u, err := user.Lookup(osUser)
	if err != nil {
		if out, err := exec.CommandContext(ctx, "useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", osUser).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("pglocal: PostgreSQL cannot run as root and user %q is missing; creating it failed: %w\n%s", osUser, err, out)
		}
		if u, err = user.Lookup(osUser); err != nil {
			return nil, err
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// reachableDir returns dir when every existing parent of it can be searched
// by others, so that the unprivileged server user can reach it. Otherwise
// (a checkout under a private folder, such as one made by mktemp) it returns a
// folder of its own under the system's temporary directory, derived from dir
// so that a later Start or StopDir with the same dir finds it again.
func reachableDir(dir string) string {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o001 == 0 {
			sum := sha256.Sum256([]byte(dir))
			return filepath.Join(os.TempDir(), "answerback-postgres-"+hex.EncodeToString(sum[:6]))
		}
		if p == filepath.Dir(p) {
			return dir
		}
	}
}

func portFree(port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("pglocal: port %d is taken (a PostgreSQL or another service runs there): %w", port, err)
	}
	return l.Close()
}
