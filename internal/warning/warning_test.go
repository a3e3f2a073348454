package warning

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestFit(t *testing.T) {
	const tail = " [docs: x]"
	if got := Fit("short", tail); got != "short"+tail {
		t.Errorf("Fit kept %q", got)
	}
	got := Fit(strings.Repeat("é", 1000), tail)
	if n := utf8.RuneCountInString(got); n != MaxRunes || !strings.HasSuffix(got, "…"+tail) {
		t.Errorf("Fit: %d runes, %q", n, got)
	}
}

func TestQuoteAndList(t *testing.T) {
	if got, want := Quote(strings.Repeat("9", 50), 5), `"9999…"`; got != want {
		t.Errorf("Quote = %s, want %s", got, want)
	}
	if got, want := List([]string{"a", "b"}, 80), "a, b"; got != want {
		t.Errorf("List = %q, want %q", got, want)
	}
	items := make([]string, 30)
	for i := range items {
		items[i] = `"` + strings.Repeat("x", 20) + `"`
	}
	got := List(items, 80)
	if !strings.HasSuffix(got, " and 28 more") || utf8.RuneCountInString(got) > 80+len(" and 28 more") {
		t.Errorf("List = %q", got)
	}
}
