package openai

import (
	"encoding/json"
	"testing"
)

func TestErrorBody(t *testing.T) {
	tests := []struct {
		name                      string
		errType, msg, param, code string
		want                      string
	}{
		{"param and code null when empty", TypeServer, "upstream failed", "", "",
			`{"error":{"message":"upstream failed","type":"server_error","param":null,"code":null}}`},
		{"all set", TypeInvalidRequest, "The model `x` does not exist", "model", CodeModelNotFound,
			`{"error":{"message":"The model ` + "`x`" + ` does not exist","type":"invalid_request_error","param":"model","code":"model_not_found"}}`},
		{"no HTML escaping", TypeRateLimit, "a <b> & c", "", CodeRateLimitExceeded,
			`{"error":{"message":"a <b> & c","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ErrorBody(tt.errType, tt.msg, tt.param, tt.code)
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			var e ErrorResponse
			if err := json.Unmarshal(got, &e); err != nil || e.Error.Message != tt.msg {
				t.Errorf("does not decode back: %v %+v", err, e)
			}
		})
	}
}

func TestHTTPStatus(t *testing.T) {
	tests := map[string]int{
		TypeInvalidRequest: 400, TypeAuthentication: 401, TypePermission: 403, TypeNotFound: 404,
		TypeRateLimit: 429, TypeInsufficientQuota: 429, TypeTimeout: 504, TypeServer: 500, TypeAPI: 500, "made_up": 500,
	}
	for typ, want := range tests {
		if got := HTTPStatus(typ); got != want {
			t.Errorf("HTTPStatus(%q) = %d, want %d", typ, got, want)
		}
	}
}
