package meshassets

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Pipy 1.5.12 is what FSM v1.5.1's chart pins as its sidecar image tag; the
// commit and date are its tag's, for the version banner.
const (
	PipyVersion    = "1.5.12"
	pipyCommitSHA  = "c7e7ec3b05e0b451e3c1f4b8604de3d99155033f"
	pipyCommitDate = "2025-06-05"
)

// Environment variables that override the defaults.
const (
	// EnvPipy names a ready Pipy binary to use instead of building one.
	EnvPipy = "FSM_WEBHOOKS_PIPY"
	// EnvPipySource names the source tarball (default: PipySource).
	EnvPipySource = "FSM_WEBHOOKS_PIPY_SRC"
)

// pipyPackages are what BUILD.md installs; perl, make and g++ are on every
// development machine already.
var pipyPackages = []string{"cmake", "clang", "libssl-dev", "libsqlite3-dev", "zlib1g-dev"}

// PipySource is the source tarball: $FSM_WEBHOOKS_PIPY_SRC, else the copy in
// shared/, which sits beside the checkout on the development machines and
// in CI.
func PipySource(repoRoot string) string {
	if p := os.Getenv(EnvPipySource); p != "" {
		return p
	}
	return filepath.Join(repoRoot, "..", "shared", "pipy", "pipy-"+PipyVersion+"-src.tar.gz")
}

// Pipy returns the path of a working Pipy PipyVersion binary
// ($FSM_WEBHOOKS_PIPY if set), building it from the source tarball src into
// the cache the first time; progress may be nil.
func Pipy(ctx context.Context, src string, progress io.Writer) (string, error) {
	if p := os.Getenv(EnvPipy); p != "" {
		if err := checkPipy(ctx, p); err != nil {
			return "", fmt.Errorf("pipy: %s=%s: %w", EnvPipy, p, err)
		}
		return p, nil
	}
	return ensure(ctx, asset{
		name: "pipy", version: PipyVersion, estimate: "~13 min on 2 busy cores",
		check: checkPipy,
		build: func(ctx context.Context, out string, log io.Writer) error {
			return buildPipy(ctx, src, out, log, progress)
		},
	}, progress)
}

// checkPipy runs `pipy --version`, which also fails when a runtime library
// is missing.
func checkPipy(ctx context.Context, bin string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s --version: %w: %s", bin, err, bytes.TrimSpace(out))
	}
	if !bytes.Contains(out, []byte(PipyVersion)) {
		return fmt.Errorf("%s --version printed %q, want version %s", bin, out, PipyVersion)
	}
	return nil
}

// buildPipy follows BUILD.md in a work directory beside out.
func buildPipy(ctx context.Context, src, out string, log, progress io.Writer) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("source tarball: %w (set %s)", err, EnvPipySource)
	}
	if err := installPackages(ctx, pipyPackages, progress); err != nil {
		return err
	}
	work, err := os.MkdirTemp(filepath.Dir(out), "work-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }() // best effort: a leftover is only disk
	srcDir := filepath.Join(work, "pipy-"+PipyVersion)
	buildDir := filepath.Join(srcDir, "build")
	// generate_version_h.sh reads CI_COMMIT_* instead of calling git
	// describe (there is no git checkout).
	env := append(os.Environ(), "CC=clang", "CXX=clang++",
		"CI_COMMIT_TAG="+PipyVersion, "CI_COMMIT_SHA="+pipyCommitSHA, "CI_COMMIT_DATE="+pipyCommitDate)
	for _, s := range []struct {
		dir  string
		args []string
	}{
		{work, []string{"tar", "-xzf", src, "-C", work}},
		{work, []string{"mkdir", buildDir}},
		// -lsqlite3 through CMAKE_CXX_STANDARD_LIBRARIES: CMakeLists.txt
		// overwrites CMAKE_EXE_LINKER_FLAGS.
		{buildDir, []string{"cmake", "..", "-DCMAKE_BUILD_TYPE=Release", "-DPIPY_GUI=OFF", "-DPIPY_CODEBASES=OFF",
			"-DPIPY_USE_SYSTEM_OPENSSL=ON", "-DCMAKE_CXX_STANDARD_LIBRARIES=-lsqlite3"}},
		{buildDir, []string{"make", "-j2", "pipy"}},
		{buildDir, []string{"cp", filepath.Join(srcDir, "bin", "pipy"), out}},
	} {
		if err := runLogged(ctx, s.dir, env, log, s.args...); err != nil {
			return err
		}
	}
	return nil
}

func runLogged(ctx context.Context, dir string, env []string, log io.Writer, args ...string) error {
	fmt.Fprintf(log, "$ (cd %s && %s)\n", dir, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// installPackages installs the Debian packages of pkgs that are missing.
func installPackages(ctx context.Context, pkgs []string, progress io.Writer) error {
	var missing []string
	for _, p := range pkgs {
		out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Status}", p).Output()
		if err != nil || !bytes.Contains(out, []byte("install ok installed")) {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	fmt.Fprintf(progress, "assets: installing %s\n", strings.Join(missing, " "))
	for _, args := range [][]string{{"update"}, append([]string{"install", "-y", "--no-install-recommends"}, missing...)} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, lastLines(out, 20))
		}
	}
	return nil
}
