package osv

import (
	"strings"
	"testing"
)

// Scores as NVD's calculator gives them for well-known vectors.
func TestCVSS3Score(t *testing.T) {
	for vector, want := range map[string]float64{
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H":               9.8,
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H":               10.0,
		"CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:L/I:L/A:N":               5.4,
		"CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H":               7.8,
		"CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N":               5.9,
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N":               6.1,
		"CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H":               7.5,
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N":               0,
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/RL:O/RC:C": 9.8, // temporal metrics ignored
	} {
		got, err := CVSS3Score(vector)
		if err != nil || got != want {
			t.Errorf("%s: %v, %v; want %v", vector, got, err, want)
		}
	}
}

func TestCVSS3ScoreRefusals(t *testing.T) {
	for vector, want := range map[string]string{
		"CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N": "not a CVSS v3 vector",
		"AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H":                             "not a CVSS v3 vector",
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H":                        "A is missing",
		"CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H":                    "AV:X is not a valid value",
		"CVSS:3.1/AV:N/AV:L/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H":               "AV is given twice",
		"CVSS:3.1/AVN/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H":                     "is not metric:value",
	} {
		if _, err := CVSS3Score(vector); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error containing %q", vector, err, want)
		}
	}
}

func TestRating(t *testing.T) {
	for score, want := range map[float64]string{0: "None", 0.1: "Low", 3.9: "Low", 4: "Medium", 6.9: "Medium", 7: "High", 8.9: "High", 9: "Critical", 10: "Critical"} {
		if got := Rating(score); got != want {
			t.Errorf("%v: %s, want %s", score, got, want)
		}
	}
}
