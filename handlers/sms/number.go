// Package sms sends Sigil's outgoing text messages (MSISDN validation codes)
// and normalises the phone numbers they go to.
//
// Messages go out through a configurable HTTP API (HTTPProvider), which covers
// Twilio, Vonage/Nexmo and similar providers, or, when no provider URL is
// configured, are written to the log (LogSender).
package sms

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// ErrInvalidNumber is returned (wrapped with a short reason) for phone numbers
// that cannot be parsed or are not valid numbers, and for messages whose
// recipient is not a bare MSISDN.
var ErrInvalidNumber = errors.New("invalid phone number")

// maxInputLen bounds the phone_number accepted by Normalize; real numbers,
// even with formatting and an extension, are far shorter.
const maxInputLen = 64

// Normalize parses phoneNumber as dialled from country (ISO 3166-1 alpha-2,
// case-insensitive) and returns the MSISDN (E.164 without the leading '+',
// digits only) and the number in international format, e.g.
//
//	Normalize("GB", "07400 123456") → "447400123456", "+44 7400 123456"
//
// A number starting with '+' carries its own country code, which overrides
// country; country must still be a known region. Unknown countries, numbers
// that do not parse, numbers with an extension and numbers that are not valid
// for their region (phonenumbers.IsValidNumber) yield an error wrapping
// ErrInvalidNumber. Note that IsValidNumber follows libphonenumber's
// metadata, which rejects ranges reserved for fiction such as the UK's
// 07700 900xxx.
func Normalize(country, phoneNumber string) (msisdn, intl string, err error) {
	region := strings.ToUpper(strings.TrimSpace(country))
	if !phonenumbers.GetSupportedRegions()[region] {
		return "", "", fmt.Errorf("%w: unknown country %q", ErrInvalidNumber, country)
	}
	if len(phoneNumber) > maxInputLen {
		return "", "", fmt.Errorf("%w: too long", ErrInvalidNumber)
	}
	num, err := parse(phoneNumber, region)
	if err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrInvalidNumber, err)
	}
	if !phonenumbers.IsValidNumber(num) {
		return "", "", fmt.Errorf("%w: not a valid number", ErrInvalidNumber)
	}
	if num.GetExtension() != "" {
		// The MSISDN would silently drop it and reach someone else.
		return "", "", fmt.Errorf("%w: extensions are not supported", ErrInvalidNumber)
	}
	msisdn = strings.TrimPrefix(phonenumbers.Format(num, phonenumbers.E164), "+")
	if !validMSISDN(msisdn) {
		// Not expected for a valid number; never hand on anything else.
		return "", "", fmt.Errorf("%w: unexpected E.164 form", ErrInvalidNumber)
	}
	return msisdn, phonenumbers.Format(num, phonenumbers.INTERNATIONAL), nil
}

// parse wraps phonenumbers.Parse, turning a panic inside the library into an
// error: the input comes straight from unauthenticated clients.
func parse(s, region string) (num *phonenumbers.PhoneNumber, err error) {
	defer func() {
		if r := recover(); r != nil {
			num, err = nil, errors.New("unparsable")
		}
	}()
	return phonenumbers.Parse(s, region)
}

// validMSISDN reports whether s is 1 to 15 ASCII digits (the E.164 maximum).
func validMSISDN(s string) bool {
	if len(s) == 0 || len(s) > 15 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// checkTo validates a Message recipient before it reaches a Sender's backend.
func checkTo(to string) error {
	if !validMSISDN(to) {
		return fmt.Errorf("%w: recipient is not an MSISDN (1-15 digits, no '+')", ErrInvalidNumber)
	}
	return nil
}
