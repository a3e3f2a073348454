package rules

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// TestParseQuantityBounds: every form a real value is written in parses as
// resource.ParseQuantity parses it; a value over the bounds is refused
// unparsed with ErrCostlyQuantity.
func TestParseQuantityBounds(t *testing.T) {
	for _, tc := range []struct {
		in     string
		costly bool
		bad    bool // refused by resource.ParseQuantity itself
	}{
		{in: "500m"}, {in: "2"}, {in: "64Mi"}, {in: "1.5Gi"}, {in: "1E"}, {in: "2Ei"}, {in: "1e3"}, {in: "5E-2"},
		{in: "1e+9"}, {in: "-1e-0000009"}, {in: "9223372036854775807"}, {in: "0.000000001"}, {in: "1e999"}, {in: "1e-999"},
		{in: strings.Repeat("9", 59) + "e999"}, {in: "0." + strings.Repeat("0", 56) + "1e-999"},
		{in: "lots", bad: true}, {in: "1e1.5", bad: true}, {in: "1Q", bad: true},
		{in: "1e1000", costly: true}, {in: "1e-1000", costly: true}, {in: "1e-99999999", costly: true},
		{in: "1e-99999999999999999999", costly: true}, {in: "1E+4294967296", costly: true},
		{in: strings.Repeat("1", 65), costly: true}, {in: "0." + strings.Repeat("0", 70) + "1", costly: true},
	} {
		_, err := ParseQuantity(tc.in)
		switch {
		case tc.costly && !errors.Is(err, ErrCostlyQuantity):
			t.Errorf("ParseQuantity(%q) = %v, want ErrCostlyQuantity", tc.in, err)
		case tc.bad && (err == nil || errors.Is(err, ErrCostlyQuantity)):
			t.Errorf("ParseQuantity(%q) = %v, want resource.ParseQuantity's error", tc.in, err)
		case !tc.costly && !tc.bad && err != nil:
			t.Errorf("ParseQuantity(%q) = %v, want it parsed", tc.in, err)
		}
	}
}

// TestParseQuantityCost bounds what a quantity costs, in bytes allocated
// (resource.ParseQuantity's time grows with them): 1e-999999 takes 3.4 MB
// and 40 ms unguarded, 1e-9999999 1.5 s; the worst value within the bounds
// a few KB.
func TestParseQuantityCost(t *testing.T) {
	for _, in := range []string{
		"1e-999999", strings.Repeat("7", 200000),
		strings.Repeat("9", 59) + "e999", "0." + strings.Repeat("0", 55) + "1e-999",
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		q, err := ParseQuantity(in)
		if err == nil {
			_ = q.String()
		}
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
			t.Errorf("ParseQuantity(%.20q…, %d characters) allocated %d bytes, want at most 64 KiB", in, len(in), n)
		}
	}
}

// TestHugePagesNameCost: a hugepages-<size> resource name is parsed as a
// quantity too; a costly size is refused as any size that is not whole
// bytes, unparsed (hugepages-1e-999999 allocated 3.7 MB).
func TestHugePagesNameCost(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	errs := Resources(field.NewPath("r"), corev1.ResourceRequirements{Limits: corev1.ResourceList{"hugepages-1e-999999": resource.MustParse("2Mi")}})
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Errorf("Resources allocated %d bytes, want at most 64 KiB: the name's size was parsed", n)
	}
	if len(errs) == 0 || !strings.Contains(errs[0].Error(), `Unsupported value: "hugepages-1e-999999"`) {
		t.Errorf("errors %v, want the name refused", errs)
	}
}
