package osv

import (
	"fmt"
	"math"
	"strings"
)

// CVSS3Score computes the base score of a CVSS v3.0 or v3.1 vector
// ("CVSS:3.1/AV:N/AC:L/..."), as the FIRST specification's formulas and
// Roundup define it, so that an imported advisory carries the score its
// vector means and `trainyard_clusters_exposed{severity}` can rate it.
// A vector with a base metric missing, repeated or out of range is an error
// naming it; temporal and environmental metrics are allowed and ignored.
func CVSS3Score(vector string) (float64, error) {
	parts := strings.Split(vector, "/")
	if len(parts) == 0 || (parts[0] != "CVSS:3.0" && parts[0] != "CVSS:3.1") {
		return 0, fmt.Errorf("%q: not a CVSS v3 vector (it must start with CVSS:3.0/ or CVSS:3.1/)", vector)
	}
	base := map[string]map[string]float64{
		"AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
		"AC": {"L": 0.77, "H": 0.44},
		"PR": {"N": 0.85, "L": 0.62, "H": 0.27},
		"UI": {"N": 0.85, "R": 0.62},
		"S":  {"U": 0, "C": 1},
		"C":  {"H": 0.56, "L": 0.22, "N": 0},
		"I":  {"H": 0.56, "L": 0.22, "N": 0},
		"A":  {"H": 0.56, "L": 0.22, "N": 0},
	}
	got := map[string]string{}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, ":")
		if !ok {
			return 0, fmt.Errorf("%q: %q is not metric:value", vector, p)
		}
		values, isBase := base[k]
		if !isBase {
			continue // temporal or environmental
		}
		if _, dup := got[k]; dup {
			return 0, fmt.Errorf("%q: %s is given twice", vector, k)
		}
		if _, valid := values[v]; !valid {
			return 0, fmt.Errorf("%q: %s:%s is not a valid value", vector, k, v)
		}
		got[k] = v
	}
	for _, k := range []string{"AV", "AC", "PR", "UI", "S", "C", "I", "A"} {
		if _, ok := got[k]; !ok {
			return 0, fmt.Errorf("%q: the base metric %s is missing", vector, k)
		}
	}
	changed := got["S"] == "C"
	pr := base["PR"][got["PR"]]
	if changed && got["PR"] == "L" {
		pr = 0.68
	} else if changed && got["PR"] == "H" {
		pr = 0.5
	}
	iss := 1 - (1-base["C"][got["C"]])*(1-base["I"][got["I"]])*(1-base["A"][got["A"]])
	impact := 6.42 * iss
	if changed {
		impact = 7.52*(iss-0.029) - 3.25*math.Pow(iss-0.02, 15)
	}
	if impact <= 0 {
		return 0, nil
	}
	exploitability := 8.22 * base["AV"][got["AV"]] * base["AC"][got["AC"]] * pr * base["UI"][got["UI"]]
	if changed {
		return roundUp(math.Min(1.08*(impact+exploitability), 10)), nil
	}
	return roundUp(math.Min(impact+exploitability, 10)), nil
}

// roundUp is CVSS v3.1's Roundup: the smallest one-decimal number not
// below x, computed on integers so that 4.000001 is not taken for 4.1 by a
// floating-point error.
func roundUp(x float64) float64 {
	i := int64(math.Round(x * 100000))
	if i%10000 == 0 {
		return float64(i) / 100000
	}
	return float64(i/10000+1) / 10
}

// Rating is the qualitative severity of a CVSS score: None, Low, Medium,
// High or Critical.
func Rating(score float64) string {
	switch {
	case score == 0:
		return "None"
	case score < 4:
		return "Low"
	case score < 7:
		return "Medium"
	case score < 9:
		return "High"
	}
	return "Critical"
}
