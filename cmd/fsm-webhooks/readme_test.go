package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// readmeFlag is one flag a row of the README's configuration table names:
// the command it belongs to ("" for serve and local) and its name.
type readmeFlag struct{ command, name string }

func (f readmeFlag) String() string {
	if f.command == "" {
		return "--" + f.name
	}
	return f.command + " --" + f.name
}

// readmeRow is one row of the README's configuration table.
type readmeRow struct {
	line      string
	flags     []readmeFlag
	defaults  string // the default column
	helmValue string // the Helm value column
}

// flagRef is a backquoted flag reference in the table's first column:
// `--name`, `--name/-kind/-group` (the same prefix, other last parts) or
// `<command> --name`.
var flagRef = regexp.MustCompile("`((?:[a-z-]+ )*)--([a-z0-9-]+)((?:/-[a-z0-9-]+)*)`")

// readmeConfigTable parses the flag table of README.md's "Configuration".
func readmeConfigTable(t *testing.T) []readmeRow {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := string(data)
	i := strings.Index(section, "\n## Configuration\n")
	if i < 0 {
		t.Fatal(`README.md has no "## Configuration" section`)
	}
	section = section[i+1:]
	if j := strings.Index(section[1:], "\n## "); j >= 0 {
		section = section[:j+1]
	}
	var rows []readmeRow
	inTable := false
	for _, line := range strings.Split(section, "\n") {
		if strings.HasPrefix(line, "| flag | default | Helm value |") {
			inTable = true
			continue
		}
		if !inTable || strings.HasPrefix(line, "|---") {
			continue
		}
		if !strings.HasPrefix(line, "|") {
			if len(rows) > 0 {
				break
			}
			continue
		}
		cells := splitRow(line)
		if len(cells) < 4 {
			t.Fatalf("README configuration row has %d cells, want 4: %s", len(cells), line)
		}
		row := readmeRow{line: line, defaults: cells[1], helmValue: cells[2]}
		for _, m := range flagRef.FindAllStringSubmatch(cells[0], -1) {
			command := strings.TrimSpace(m[1])
			row.flags = append(row.flags, readmeFlag{command, m[2]})
			if m[3] != "" {
				// --cert-manager-issuer-name/-kind/-group: replace the last part.
				stem := m[2][:strings.LastIndexByte(m[2], '-')+1]
				for _, part := range strings.Split(m[3][2:], "/-") {
					row.flags = append(row.flags, readmeFlag{command, stem + part})
				}
			}
		}
		if len(row.flags) == 0 {
			t.Fatalf("README configuration row names no flag: %s", line)
		}
		rows = append(rows, row)
	}
	if len(rows) < 30 {
		t.Fatalf("found %d rows in README's configuration table; the parser no longer matches it", len(rows))
	}
	return rows
}

// splitRow splits a Markdown table row on the '|' outside backquotes.
func splitRow(line string) []string {
	var cells []string
	var cur strings.Builder
	code := false
	for _, r := range strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(line), "|"), "|") {
		switch {
		case r == '`':
			code = !code
		case r == '|' && !code:
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
			continue
		}
		cur.WriteRune(r)
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

// defaultTokens are the words of a default cell before its first
// parenthesis, without backquotes and separating punctuation.
func defaultTokens(cell string) []string {
	if i := strings.Index(cell, " ("); i >= 0 {
		cell = cell[:i]
	}
	cell = strings.ReplaceAll(cell, "`", "")
	var out []string
	for _, w := range strings.Fields(cell) {
		out = append(out, strings.TrimRight(w, ",:"))
	}
	return out
}

// matchesDefault: whether a README token states flag f's default. "—",
// "empty" and "env" (the default comes from an env variable the chart or
// user sets) state an empty default; durations compare by value.
func matchesDefault(f *pflag.Flag, token string) bool {
	def := f.DefValue
	if f.Value.Type() == "stringSlice" {
		def = strings.Trim(def, "[]")
	}
	if def == "" {
		return token == "—" || token == "empty" || token == "env"
	}
	if f.Value.Type() == "duration" {
		want, err1 := time.ParseDuration(def)
		got, err2 := time.ParseDuration(token)
		return err1 == nil && err2 == nil && want == got
	}
	return token == def
}

// TestREADMEConfigurationTable: the README's configuration table names
// every flag of serve and local and no other, each with the default it has,
// and a flag whose row names a Helm value is one the chart passes.
func TestREADMEConfigurationTable(t *testing.T) {
	rows := readmeConfigTable(t)
	root := newRootCommand()
	serve, local := find(t, root, "serve"), find(t, root, "local")
	lookup := func(f readmeFlag) *pflag.Flag {
		if f.command != "" {
			c, _, err := root.Find(strings.Fields(f.command))
			if err != nil || commandKey(c) != f.command {
				return nil
			}
			return c.Flags().Lookup(f.name)
		}
		if fl := serve.Flags().Lookup(f.name); fl != nil {
			return fl
		}
		if fl := local.Flags().Lookup(f.name); fl != nil {
			return fl
		}
		return root.PersistentFlags().Lookup(f.name)
	}
	deployment, err := os.ReadFile(filepath.Join("..", "..", "charts", "fsm-webhooks", "templates", "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, row := range rows {
		tokens := defaultTokens(row.defaults)
		next := 0
		for _, f := range row.flags {
			fl := lookup(f)
			if fl == nil {
				t.Errorf("README's configuration table names %s, which no such command takes", f)
				continue
			}
			if f.command == "" || f.command == "serve" || f.command == "local" {
				listed[f.name] = true
			}
			// The row's defaults in the order of its flags; a lone "—"
			// stands for all of them.
			found := len(tokens) == 1 && tokens[0] == "—" && matchesDefault(fl, "—")
			for ; !found && next < len(tokens); next++ {
				if matchesDefault(fl, tokens[next]) {
					found = true
					next++
					break
				}
			}
			if !found {
				t.Errorf("README gives %s the default %q; the flag's default is %q", f, row.defaults, fl.DefValue)
			}
			// A row naming a Helm value: the chart's Deployment passes the
			// flag (the Vault token goes through a Secret, see the row).
			if f.command == "" && !strings.HasPrefix(row.helmValue, "—") && f.name != "vault-token" &&
				!strings.Contains(string(deployment), "--"+f.name+"=") && !strings.Contains(string(deployment), "- --"+f.name+"\n") {
				t.Errorf("README names Helm value %q for %s, but charts/fsm-webhooks/templates/deployment.yaml does not pass the flag", row.helmValue, f)
			}
		}
	}
	for _, c := range []*cobra.Command{serve, local} {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Name != "help" && !listed[f.Name] {
				t.Errorf("%s --%s is missing from README's configuration table", c.Name(), f.Name)
			}
		})
	}
	// Every flag the chart passes exists.
	for _, m := range regexp.MustCompile(`(?m)^\s+- "?--([a-z0-9-]+)`).FindAllStringSubmatch(string(deployment), -1) {
		if serve.Flags().Lookup(m[1]) == nil && root.PersistentFlags().Lookup(m[1]) == nil {
			t.Errorf("charts/fsm-webhooks/templates/deployment.yaml passes --%s, which serve does not take", m[1])
		}
	}
}

func TestReadmeParsers(t *testing.T) {
	if got := splitRow("| `a|b` | c | d |"); !slices.Equal(got, []string{"`a|b`", "c", "d"}) {
		t.Errorf("splitRow = %q", got)
	}
	if got := defaultTokens("`auto`: `a,b`, `1s` (x, y)"); !slices.Equal(got, []string{"auto", "a,b", "1s"}) {
		t.Errorf("defaultTokens = %q", got)
	}
	m := flagRef.FindAllStringSubmatch("`--cert-manager-issuer-name/-kind/-group` and `install-crds --timeout`", -1)
	if len(m) != 2 || m[0][2] != "cert-manager-issuer-name" || m[0][3] != "/-kind/-group" || m[1][1] != "install-crds " || m[1][2] != "timeout" {
		t.Errorf("flagRef matches %q", m)
	}
}
