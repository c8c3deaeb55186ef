// Package matrixerr is the one typed Matrix error every layer returns: an
// errcode, a public message, the HTTP status the spec gives, optional extra
// body fields (mxid, lookup_pepper, ...) and an optional private cause that
// is logged but never shown.
package matrixerr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Error is a Matrix error response.
type Error struct {
	Status  int
	Code    string
	Message string
	Extra   map[string]any
	Cause   error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s (%d): %s: %v", e.Code, e.Status, e.Message, e.Cause)
	}
	return fmt.Sprintf("%s (%d): %s", e.Code, e.Status, e.Message)
}

func (e *Error) Unwrap() error { return e.Cause }

// With returns a copy of e with an extra body field.
func (e *Error) With(key string, value any) *Error {
	c := *e
	c.Extra = make(map[string]any, len(e.Extra)+1)
	for k, v := range e.Extra {
		c.Extra[k] = v
	}
	c.Extra[key] = value
	return &c
}

// WithCause returns a copy of e carrying a private cause for the logs.
func (e *Error) WithCause(err error) *Error {
	c := *e
	c.Cause = err
	return &c
}

// Body is the JSON object sent to the client.
func (e *Error) Body() map[string]any {
	b := make(map[string]any, 2+len(e.Extra))
	for k, v := range e.Extra {
		b[k] = v
	}
	b["errcode"] = e.Code
	b["error"] = e.Message
	return b
}

func (e *Error) MarshalJSON() ([]byte, error) { return json.Marshal(e.Body()) }

// As finds a Matrix error in err's chain.
func As(err error) (*Error, bool) {
	var me *Error
	ok := errors.As(err, &me)
	return me, ok
}

// New builds an error with any code; prefer the constructors below.
func New(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

// Request shape.

func NotJSON(msg string) *Error { return New(http.StatusBadRequest, "M_NOT_JSON", msg) }
func BadJSON(msg string) *Error { return New(http.StatusBadRequest, "M_BAD_JSON", msg) }
func InvalidParam(msg string) *Error {
	return New(http.StatusBadRequest, "M_INVALID_PARAM", msg)
}

// MissingParams names every missing parameter.
func MissingParams(names ...string) *Error {
	return New(http.StatusBadRequest, "M_MISSING_PARAMS", "Missing parameters: "+strings.Join(names, ", ")).
		With("missing", names)
}

func TooLarge(msg string) *Error { return New(http.StatusRequestEntityTooLarge, "M_TOO_LARGE", msg) }

// Unrecognized is 404 for an unknown endpoint or token, 405 for a wrong
// method, 400 for an unsupported medium.
func Unrecognized(status int, msg string) *Error { return New(status, "M_UNRECOGNIZED", msg) }

func NotFound(msg string) *Error { return New(http.StatusNotFound, "M_NOT_FOUND", msg) }

// LimitExceeded carries the retry delay, as the client-server API does.
func LimitExceeded(retryAfterMS int64) *Error {
	return New(http.StatusTooManyRequests, "M_LIMIT_EXCEEDED", "Too many requests").
		With("retry_after_ms", retryAfterMS)
}

// Unknown hides cause from the client and keeps it for the logs.
func Unknown(cause error) *Error {
	return &Error{Status: http.StatusInternalServerError, Code: "M_UNKNOWN", Message: "Internal server error", Cause: cause}
}

// Auth and terms.

func Forbidden(msg string) *Error    { return New(http.StatusForbidden, "M_FORBIDDEN", msg) }
func Unauthorized(msg string) *Error { return New(http.StatusUnauthorized, "M_UNAUTHORIZED", msg) }
func UnknownToken(msg string) *Error { return New(http.StatusUnauthorized, "M_UNKNOWN_TOKEN", msg) }
func TermsNotSigned() *Error {
	return New(http.StatusForbidden, "M_TERMS_NOT_SIGNED", "Terms of service have not been accepted")
}

// Validation sessions.

func SessionNotValidated() *Error {
	return New(http.StatusBadRequest, "M_SESSION_NOT_VALIDATED", "This validation session has not yet been completed")
}
func SessionExpired() *Error {
	return New(http.StatusBadRequest, "M_SESSION_EXPIRED", "This validation session has expired: start a new one")
}
func NoValidSession() *Error {
	return New(http.StatusNotFound, "M_NO_VALID_SESSION", "No valid session was found matching that sid and client secret")
}
func TokenIncorrect() *Error {
	return New(http.StatusBadRequest, "M_TOKEN_INCORRECT", "The token is incorrect")
}
func InvalidEmail(msg string) *Error { return New(http.StatusBadRequest, "M_INVALID_EMAIL", msg) }
func EmailSendError(cause error) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "M_EMAIL_SEND_ERROR", Message: "The validation email could not be sent", Cause: cause}
}
func InvalidAddress(msg string) *Error { return New(http.StatusBadRequest, "M_INVALID_ADDRESS", msg) }
func SendError(cause error) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "M_SEND_ERROR", Message: "The message could not be sent", Cause: cause}
}
func DestinationRejected(msg string) *Error {
	return New(http.StatusBadRequest, "M_DESTINATION_REJECTED", msg)
}

// Associations and invites.

func ThreepidInUse(mxid string) *Error {
	return New(http.StatusBadRequest, "M_THREEPID_IN_USE", "Binding already known").With("mxid", mxid)
}

// InvalidPepper tells the client the algorithm and pepper to use instead.
func InvalidPepper(algorithm, pepper string) *Error {
	return New(http.StatusBadRequest, "M_INVALID_PEPPER", "Unknown or invalid pepper: it may have been rotated").
		With("algorithm", algorithm).With("lookup_pepper", pepper)
}
