// Package apierr defines the stable, machine-readable error codes of the
// public API. Services return *Error values (or wrap them); only the edge
// turns a code into an HTTP status, through Status.
package apierr

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
)

// Code is a stable error identifier. Clients may switch on it; never rename one.
type Code string

const (
	InvalidJSON       Code = "invalid_json"
	ValidationFailed  Code = "validation_failed"
	InvalidParameter  Code = "invalid_parameter"
	RangeTooLarge     Code = "range_too_large"
	BodyTooLarge      Code = "body_too_large"
	BatchTooLarge     Code = "batch_too_large"
	MetadataTooLarge  Code = "metadata_too_large"
	UnsupportedMedia  Code = "unsupported_media_type"
	APIKeyRequired    Code = "api_key_required"
	APIKeyInvalid     Code = "api_key_invalid"
	APIKeyRevoked     Code = "api_key_revoked"
	APIKeyExpired     Code = "api_key_expired"
	AdminRequired     Code = "admin_credential_required"
	AdminInvalid      Code = "admin_credential_invalid"
	PartnerInactive   Code = "partner_inactive"
	SubSystemInactive Code = "sub_system_inactive"
	NotFound          Code = "not_found"
	PartnerNotFound   Code = "partner_not_found"
	SubSystemNotFound Code = "sub_system_not_found"
	APIKeyNotFound    Code = "api_key_not_found"
	RouteNotFound     Code = "route_not_found"
	MethodNotAllowed  Code = "method_not_allowed"
	Conflict          Code = "conflict"
	CodeTaken         Code = "code_taken"
	PartnerDeleted    Code = "partner_deleted"
	SubSystemDeleted  Code = "sub_system_deleted"
	RateLimited       Code = "rate_limited"
	Backpressure      Code = "backpressure"
	// Overloaded: the edge holds as many request bodies as it may; retry.
	Overloaded        Code = "overloaded"
	Unavailable       Code = "service_unavailable"
	Timeout           Code = "timeout"
	Internal          Code = "internal_error"
	DuplicateEvent    Code = "duplicate_event"
	ScopeMissing      Code = "scope_missing"
	KeySubSystem      Code = "key_sub_system_mismatch"
	SignatureRequired Code = "signature_required"
	SignatureInvalid  Code = "signature_invalid"
	RequestExpired    Code = "request_expired"
	RequestReplayed   Code = "request_replayed"
	// KeyRevoked: an admin change of a revoked key (it cannot be updated or
	// regenerated; issue a new one). APIKeyRevoked is a revoked key presented.
	KeyRevoked Code = "key_revoked"
	// KeyRotated: the key was regenerated already; rotate its replacement.
	KeyRotated Code = "key_rotated"
	// PropagationPending: the change is stored but not yet announced to
	// every edge; repeating the request announces it again.
	PropagationPending Code = "propagation_pending"
	// KeyNotBound: a Segment write key must be bound to a sub-system (a
	// Segment source is one sub-system).
	KeyNotBound Code = "key_not_bound"
	// MessageTooLarge: a Segment message over 32 KB or batch over 500 KB,
	// answered 400 as Segment's API does.
	MessageTooLarge Code = "message_too_large"
)

var statuses = map[Code]int{
	InvalidJSON:        http.StatusBadRequest,
	ValidationFailed:   http.StatusBadRequest,
	InvalidParameter:   http.StatusBadRequest,
	RangeTooLarge:      http.StatusBadRequest,
	BodyTooLarge:       http.StatusRequestEntityTooLarge,
	BatchTooLarge:      http.StatusRequestEntityTooLarge,
	MetadataTooLarge:   http.StatusRequestEntityTooLarge,
	UnsupportedMedia:   http.StatusUnsupportedMediaType,
	APIKeyRequired:     http.StatusUnauthorized,
	APIKeyInvalid:      http.StatusUnauthorized,
	APIKeyRevoked:      http.StatusUnauthorized,
	APIKeyExpired:      http.StatusUnauthorized,
	AdminRequired:      http.StatusUnauthorized,
	AdminInvalid:       http.StatusUnauthorized,
	PartnerInactive:    http.StatusForbidden,
	SubSystemInactive:  http.StatusForbidden,
	NotFound:           http.StatusNotFound,
	PartnerNotFound:    http.StatusNotFound,
	SubSystemNotFound:  http.StatusNotFound,
	APIKeyNotFound:     http.StatusNotFound,
	RouteNotFound:      http.StatusNotFound,
	MethodNotAllowed:   http.StatusMethodNotAllowed,
	Conflict:           http.StatusConflict,
	CodeTaken:          http.StatusConflict,
	PartnerDeleted:     http.StatusConflict,
	SubSystemDeleted:   http.StatusConflict,
	DuplicateEvent:     http.StatusConflict,
	ScopeMissing:       http.StatusForbidden,
	KeySubSystem:       http.StatusForbidden,
	SignatureRequired:  http.StatusUnauthorized,
	SignatureInvalid:   http.StatusUnauthorized,
	RequestExpired:     http.StatusUnauthorized,
	RequestReplayed:    http.StatusUnauthorized,
	RateLimited:        http.StatusTooManyRequests,
	Backpressure:       http.StatusServiceUnavailable,
	Overloaded:         http.StatusServiceUnavailable,
	Unavailable:        http.StatusServiceUnavailable,
	Timeout:            http.StatusServiceUnavailable,
	Internal:           http.StatusInternalServerError,
	KeyRevoked:         http.StatusConflict,
	KeyRotated:         http.StatusConflict,
	PropagationPending: http.StatusServiceUnavailable,
	KeyNotBound:        http.StatusBadRequest,
	MessageTooLarge:    http.StatusBadRequest,
}

// Status is the HTTP status for a code; unknown codes are internal errors.
func (c Code) Status() int {
	if s, ok := statuses[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Codes lists every code, sorted (the OpenAPI document enumerates them).
func Codes() []Code {
	out := make([]Code, 0, len(statuses))
	for c := range statuses {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// Known reports whether c is a code this package defines.
func (c Code) Known() bool { _, ok := statuses[c]; return ok }

// FieldError names one invalid input field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is an API error with a stable code and a message a person can act on.
type Error struct {
	Code    Code         `json:"code"`
	Message string       `json:"message"`
	Fields  []FieldError `json:"fields,omitempty"`
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// New makes an *Error.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid makes a validation error for the given fields.
func Invalid(fields ...FieldError) *Error {
	msg := "the request has invalid fields"
	if len(fields) == 1 {
		msg = fields[0].Field + ": " + fields[0].Message
	}
	return &Error{Code: ValidationFailed, Message: msg, Fields: fields}
}

// From finds the *Error in err's chain; anything else becomes an internal
// error whose message hides the cause (it is logged, never sent).
func From(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: Internal, Message: "internal error"}
}

// Is reports whether err carries the given code.
func Is(err error, code Code) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}
