package rules

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Bounds on a quantity's text, checked before resource.ParseQuantity: its
// cost grows with the number of digits (about 2.4 s for a million) and far
// faster with a negative exponent's magnitude (1e-999999 about 40 ms,
// 1e-9999999 about 1.5 s, each further digit 20-40 times more), and the
// injector, the validator and the converter share one process and its CPU.
// Every value a resource can hold (nano units up to 2^63-1) is written in
// under 30 characters with an exponent of at most two digits, so neither
// bound refuses a real value; the apiserver itself has no bound.
const (
	MaxQuantityLength   = 64
	MaxQuantityExponent = 999
)

// QuantityDetail says what a quantity must be, for field errors.
var QuantityDetail = fmt.Sprintf("must be a quantity such as 500m, 2 or 64Mi (at most %d characters, an exponent between -%d and %d)",
	MaxQuantityLength, MaxQuantityExponent, MaxQuantityExponent)

// ErrCostlyQuantity is returned by ParseQuantity for a value over the bounds.
var ErrCostlyQuantity = fmt.Errorf("longer than %d characters or with an exponent beyond ±%d", MaxQuantityLength, MaxQuantityExponent)

// CheckQuantityCost refuses a quantity whose parsing would cost more than
// a real value's: longer than MaxQuantityLength or with a decimal exponent
// (1e3, 5E-2) beyond ±MaxQuantityExponent. Anything else is left to
// resource.ParseQuantity, which it does not call.
func CheckQuantityCost(s string) error {
	if len(s) > MaxQuantityLength {
		return ErrCostlyQuantity
	}
	// The number ends at the suffix, which for an exponent is e or E
	// followed by an optionally signed integer (a bare E is exa).
	i := strings.IndexFunc(s, func(r rune) bool { return r == 'e' || r == 'E' })
	if i < 0 || i == len(s)-1 {
		return nil
	}
	exp, err := strconv.ParseInt(s[i+1:], 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return ErrCostlyQuantity
		}
		return nil // not an exponent: ParseQuantity decides
	}
	if exp > MaxQuantityExponent || exp < -MaxQuantityExponent {
		return ErrCostlyQuantity
	}
	return nil
}

// ParseQuantity is resource.ParseQuantity for a value a user wrote, after
// CheckQuantityCost.
func ParseQuantity(s string) (resource.Quantity, error) {
	if err := CheckQuantityCost(s); err != nil {
		return resource.Quantity{}, err
	}
	return resource.ParseQuantity(s)
}
