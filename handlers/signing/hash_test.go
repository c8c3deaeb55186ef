package signing

import "testing"

func TestLookupHash(t *testing.T) {
	tests := []struct{ address, medium, want string }{
		{"alice@example.com", "email", "4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUc"},
		{"bob@example.com", "email", "LJwSazmv46n0hlMlsb_iYxI0_HXEqy_yj6Jm636cdT8"},
		{"18005552067", "msisdn", "nlo35_T5fzSGZzJApqu8lgIudJvmOQtDaHtr-I4rU7I"},
		{"12345678910", "msisdn", "S11EvvwnUWBDZtI4MTRKgVuiRx76Z9HnkbyRlWkBqJs"},
		{"carl@example.com", "email", "jDh2YLwYJg3vg9pEn3kaaXAP9jx-LlcotoH51Zgb9MA"},
		{"denny@example.com", "email", "2tZto1arl2fUYtF6tQPJND69il3xke9OBlgFgnUt2ww"},
	}
	for _, tt := range tests {
		t.Run(tt.address, func(t *testing.T) {
			if got := LookupHash(tt.address, tt.medium, "matrixrocks"); got != tt.want {
				t.Errorf("LookupHash(%q, %q) = %s, want %s", tt.address, tt.medium, got, tt.want)
			}
		})
	}
}
