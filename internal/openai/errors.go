package openai

// Error types as OpenAI writes them in the "type" field of an error body.
const (
	// TypeInvalidRequest: the request is malformed or names something that does not
	// exist (OpenAI reports an unknown model with this type and CodeModelNotFound).
	TypeInvalidRequest = "invalid_request_error"
	// TypeAuthentication: the API key is missing or wrong.
	TypeAuthentication = "authentication_error"
	// TypePermission: the key may not do this.
	TypePermission = "permission_error"
	// TypeNotFound: the route or object does not exist.
	TypeNotFound = "not_found_error"
	// TypeRateLimit: too many requests or tokens.
	TypeRateLimit = "rate_limit_error"
	// TypeInsufficientQuota: the account is out of credit.
	TypeInsufficientQuota = "insufficient_quota"
	// TypeServer: the server (or an upstream behind it) failed.
	TypeServer = "server_error"
	// TypeAPI: an error in the API itself, as OpenAI's SDKs name the generic case.
	TypeAPI = "api_error"
	// TypeTimeout: the upstream did not answer in time.
	TypeTimeout = "timeout"
)

// Error codes as OpenAI writes them in the "code" field of an error body.
const (
	// CodeModelNotFound: the model named in the request is not served.
	CodeModelNotFound = "model_not_found"
	// CodeInvalidAPIKey: the key is not known.
	CodeInvalidAPIKey = "invalid_api_key"
	// CodeRateLimitExceeded goes with TypeRateLimit.
	CodeRateLimitExceeded = "rate_limit_exceeded"
	// CodeContextLengthExceeded: the prompt and completion do not fit the model.
	CodeContextLengthExceeded = "context_length_exceeded"
	// CodeInvalidValue: a parameter has a value outside its allowed set.
	CodeInvalidValue = "invalid_value"
	// CodeMissingRequired: a required parameter is absent.
	CodeMissingRequired = "missing_required_parameter"
)

// ErrorBody returns OpenAI's error JSON:
// {"error":{"message":...,"type":...,"param":...,"code":...}}. An empty param or
// code is written as null.
func ErrorBody(errType, message, param, code string) []byte {
	e := ErrorResponse{Error: APIError{Message: message, Type: errType}}
	if param != "" {
		e.Error.Param = &param
	}
	if code != "" {
		e.Error.Code = &code
	}
	b, err := marshalNoEscape(e)
	if err != nil {
		// Only strings go in, and strings always encode.
		panic("openai: encoding an error body: " + err.Error())
	}
	return b
}

// HTTPStatus returns the HTTP status that goes with an error type, and 500 for a
// type it does not know. The numbers are written out so that this package does not
// import net/http.
func HTTPStatus(errType string) int {
	switch errType {
	case TypeInvalidRequest:
		return 400
	case TypeAuthentication:
		return 401
	case TypePermission:
		return 403
	case TypeNotFound:
		return 404
	case TypeRateLimit, TypeInsufficientQuota:
		return 429
	case TypeTimeout:
		return 504
	}
	return 500
}
