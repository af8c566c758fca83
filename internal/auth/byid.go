package auth

// AdminByID returns the principal of the active admin key with this id, as the last
// Refresh loaded it, and counts it as used. It is for sessions that a person opened
// with the key and that name the key, not the secret (the dashboard's): each request
// checks that the key is still active and reads its current role. A revoked, unknown
// or gateway key's id gives false.
//
// It walks the snapshot's admin keys, which are few; it is not for the hot path.
func (k *Keys) AdminByID(id string) (*Principal, bool) {
	if id == "" {
		return nil, false
	}
	for _, p := range k.snap.Load().admin {
		if p.KeyID == id {
			p.use.touch(k.nanos())
			return p, true
		}
	}
	return nil, false
}
