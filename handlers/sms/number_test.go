package sms_test

import (
	"errors"
	"testing"

	"github.com/sigil-matrix/sigil/handlers/sms"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		name, country, number string
		msisdn, intl          string // empty msisdn: want ErrInvalidNumber
	}{
		{"GB national mobile", "GB", "07400123456", "447400123456", "+44 7400 123456"},
		{"GB formatted, lower-case country", "gb", " 07400 123 456 ", "447400123456", "+44 7400 123456"},
		{"GB London", "GB", "020 7946 0123", "442079460123", "+44 20 7946 0123"},
		{"US punctuation", "US", "(201) 555-0123", "12015550123", "+1 201-555-0123"},
		{"explicit + overrides country", "US", "+44 7400 123456", "447400123456", "+44 7400 123456"},
		{"00 international prefix from GB", "GB", "0033 6 12 34 56 78", "33612345678", "+33 6 12 34 56 78"},
		{"tel URI", "US", "tel:+1-201-555-0123", "12015550123", "+1 201-555-0123"},
		{"full-width digits", "US", "+1 ２０１ ５５５ ０１２３", "12015550123", "+1 201-555-0123"},

		{"unknown country", "XX", "123", "", ""},
		{"unknown country with +", "XX", "+447400123456", "", ""},
		{"empty country", "", "07400123456", "", ""},
		{"non-geographic region code", "001", "+80012345678", "", ""},
		{"too short", "GB", "123", "", ""},
		{"letters", "GB", "abc", "", ""},
		{"empty", "GB", "", "", ""},
		{"unknown calling code", "US", "+999 1234 5678", "", ""},
		// libphonenumber treats Ofcom's drama range as not valid.
		{"GB fiction range", "GB", "07700900123", "", ""},
		{"GB fiction range with +", "US", "+44 7700 900123", "", ""},
		{"extension", "US", "+1 201 555 0123 ext. 12", "", ""},
		{"overlong", "GB", "07400123456" + string(make([]byte, 100)), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msisdn, intl, err := sms.Normalize(tt.country, tt.number)
			if tt.msisdn == "" {
				if !errors.Is(err, sms.ErrInvalidNumber) {
					t.Fatalf("Normalize(%q, %q) = %q, %q, %v; want ErrInvalidNumber", tt.country, tt.number, msisdn, intl, err)
				}
				if msisdn != "" || intl != "" {
					t.Errorf("results %q, %q alongside an error", msisdn, intl)
				}
				return
			}
			if err != nil {
				t.Fatalf("Normalize(%q, %q): %v", tt.country, tt.number, err)
			}
			if msisdn != tt.msisdn || intl != tt.intl {
				t.Errorf("Normalize(%q, %q) = %q, %q; want %q, %q", tt.country, tt.number, msisdn, intl, tt.msisdn, tt.intl)
			}
		})
	}
}

// FuzzNormalize checks that Normalize never panics and only returns
// well-formed MSISDNs. `go test` runs the seeds; use -fuzz to explore.
func FuzzNormalize(f *testing.F) {
	for _, s := range [][2]string{
		{"GB", "07400123456"}, {"US", "(201) 555-0123"}, {"US", "+44 7400 123456"},
		{"XX", "123"}, {"DE", "+49 (0) 30 123456"}, {"US", "tel:+1-201-555-0123;ext=1"},
		{"GB", "+"}, {"GB", "++44"}, {"US", "1-800-FLOWERS"}, {"GB", "\x00\xff"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, country, number string) {
		msisdn, _, err := sms.Normalize(country, number)
		if err != nil {
			if !errors.Is(err, sms.ErrInvalidNumber) {
				t.Fatalf("error %v does not wrap ErrInvalidNumber", err)
			}
			return
		}
		if len(msisdn) == 0 || len(msisdn) > 15 {
			t.Fatalf("MSISDN %q has a bad length", msisdn)
		}
		for _, c := range msisdn {
			if c < '0' || c > '9' {
				t.Fatalf("MSISDN %q is not all digits", msisdn)
			}
		}
	})
}
