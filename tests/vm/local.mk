# VM suite
