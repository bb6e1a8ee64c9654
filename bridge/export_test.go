package bridge

// WaitingTrains is how many trains have a long-poll waiting (tests).
func (s *Server) WaitingTrains() int { return s.changes.waiting() }

// TrackedClients is how many identities the rate limiter tracks (tests).
func (s *Server) TrackedClients() int { return s.limiter.size() }
