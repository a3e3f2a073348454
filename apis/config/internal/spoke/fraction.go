package spoke

import (
	"math"
	"strconv"
)

// FractionToHub is the v1alpha3 sampledFraction string of the v1alpha1
// number num, where raw is the string an earlier conversion down kept in the
// annotation because the number cannot reproduce it ("0.50", "high"). The
// kept string wins only while it still matches the v1alpha1 value: a number
// changed through v1alpha1 (or removed there) overrides what the annotation
// remembers.
func FractionToHub(num *float64, raw *string) *string {
	if num == nil {
		if raw != nil {
			if _, isNumber := ParseFraction(*raw); !isNumber {
				return raw
			}
		}
		return nil
	}
	if raw != nil {
		if f, ok := ParseFraction(*raw); ok && f == *num {
			return raw
		}
	}
	s := FormatFraction(*num)
	return &s
}

// ParseFraction accepts what v1alpha1 can hold as a JSON number.
func ParseFraction(s string) (float64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// FormatFraction is the shortest text that parses back to exactly f.
func FormatFraction(f float64) string {
	return strconv.FormatFloat(f, 'g', -1, 64)
}
