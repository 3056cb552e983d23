// Package kafkalocal runs real Apache Kafka brokers (4.x, KRaft mode) on this
// machine without Docker: the broker jars come from Maven Central through mvn
// and run on the machine's Java.
//
// Two shapes are supported: a single combined broker/controller, and a cluster
// of three combined nodes (replication factor 3, min.insync.replicas=2) on
// loopback ports, for fault tests. Processes are either owned by the calling
// Go process (tests: killed and restarted at will) or detached and tracked by
// pid files (the localinfra command: they outlive it until "down").
package kafkalocal

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"text/template"
)

// DefaultVersion is the Apache Kafka release used unless Options.Version says otherwise.
const DefaultVersion = "4.1.1"

// log4jVersion matches the log4j2 the broker itself depends on.
const log4jVersion = "2.24.3"

//go:embed pom.xml.tmpl
var pomTemplate string

//go:embed log4j2.yaml
var log4jConfig []byte

// ErrNoJava and ErrNoMaven report a machine that lacks the tools to run a broker.
var (
	ErrNoJava  = errors.New("kafkalocal: java not found on PATH (Java 17 or newer is needed to run the Kafka broker)")
	ErrNoMaven = errors.New("kafkalocal: mvn not found on PATH (Maven is needed to fetch the Kafka jars from Maven Central)")
)

// EnsureJars makes sure the broker jars of the given Kafka version are in
// cacheDir/kafka-<version>/libs, resolving them with Maven the first time, and
// returns that folder. A later call finds them and returns at once. Maven's
// output goes to logw.
func EnsureJars(ctx context.Context, cacheDir, version string, logw *os.File) (string, error) {
	if version == "" {
		version = DefaultVersion
	}
	return ensureArtifacts(ctx, filepath.Join(cacheDir, "kafka-"+version), logw,
		artifact{"org.apache.kafka", "kafka_2.13", version},
		// The broker logs through SLF4J 1.7; this binding routes it to log4j2 so logs reach a file.
		artifact{"org.apache.logging.log4j", "log4j-slf4j-impl", log4jVersion})
}

// EnsureTools makes sure Apache Kafka's command-line tools of the given
// version (org.apache.kafka:kafka-tools, JmxTool among them) and their
// dependencies are in cacheDir/kafka-tools-<version>/libs, resolving them
// with Maven the first time, and returns that folder, as EnsureJars does.
func EnsureTools(ctx context.Context, cacheDir, version string, logw *os.File) (string, error) {
	if version == "" {
		version = DefaultVersion
	}
	return ensureArtifacts(ctx, filepath.Join(cacheDir, "kafka-tools-"+version), logw, artifact{"org.apache.kafka", "kafka-tools", version})
}

// artifact names a Maven artifact.
type artifact struct{ Group, Artifact, Version string }

// jar is the file name of a's jar.
func (a artifact) jar() string { return a.Artifact + "-" + a.Version + ".jar" }

// ensureArtifacts resolves arts and their runtime dependencies into dir/libs
// with Maven, once: a stamp file marks a folder complete, and a later call
// finds it and returns dir/libs at once.
func ensureArtifacts(ctx context.Context, dir string, logw *os.File, arts ...artifact) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	libs := filepath.Join(dir, "libs")
	stamp := filepath.Join(dir, ".complete")
	if _, err := os.Stat(stamp); err == nil {
		return libs, nil
	}
	if _, err := exec.LookPath("java"); err != nil {
		return "", ErrNoJava
	}
	mvn, err := exec.LookPath("mvn")
	if err != nil {
		return "", ErrNoMaven
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var pom bytes.Buffer
	tmpl := template.Must(template.New("pom").Parse(pomTemplate))
	if err := tmpl.Execute(&pom, map[string]any{"Name": filepath.Base(dir), "Deps": arts}); err != nil {
		return "", err
	}
	pomPath := filepath.Join(dir, "pom.xml")
	if err := os.WriteFile(pomPath, pom.Bytes(), 0o644); err != nil {
		return "", err
	}
	_ = os.RemoveAll(libs)
	cmd := exec.CommandContext(ctx, mvn, "-q", "-B", "-f", pomPath,
		"dependency:copy-dependencies", "-DincludeScope=runtime", "-DoutputDirectory="+libs)
	cmd.Stdout, cmd.Stderr = logw, logw
	main := arts[0]
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kafkalocal: resolving %s:%s:%s with mvn: %w", main.Group, main.Artifact, main.Version, err)
	}
	if _, err := os.Stat(filepath.Join(libs, main.jar())); err != nil {
		return "", fmt.Errorf("kafkalocal: mvn finished but %s is missing: %w", main.jar(), err)
	}
	if err := os.WriteFile(stamp, []byte(main.Version+"\n"), 0o644); err != nil {
		return "", err
	}
	return libs, nil
}
