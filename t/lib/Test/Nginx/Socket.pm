package Test::Nginx::Socket;

# Minimal, self-contained, Test::Nginx::Socket-compatible test scaffold for
# the smart-imaging nginx module.  See the POD at the end of this file.

use strict;
use warnings;

# "-base" (lower case): inherit from Test::Base and re-export its functions
# without Spiffy's source filter.
use Test::Base -base;

use Digest::MD5 ();
use Digest::SHA ();
use Errno ();
use IO::Select ();
use IO::Socket::INET ();
use Time::HiRes ();

use Test::Nginx::Util qw(
    :DEFAULT
    expand_env_in_text parse_time find_nginx_binary setup_server_root
    truncate_logs write_user_files write_config_file start_nginx stop_nginx
    nginx_alive $NoNginxManager $CheckAccumErrLog
);

our $VERSION = '0.01';

our @EXPORT = (qw(
    run_tests run_test add_block_preprocessor add_response_body_check is_str
), @Test::Nginx::Util::EXPORT);

# Client socket timeout (seconds between two I/O events), like the real
# harness's default of 3s; "--- timeout" overrides it per block.
our $Timeout = $ENV{TEST_NGINX_TIMEOUT} || 3;

# How long to keep polling error.log for "--- error_log" patterns that have
# not shown up yet (nginx may log after the response has been sent).
our $ErrLogWait = 1;

my @BlockPreprocessors;
my @ResponseBodyChecks;

sub add_block_preprocessor {
    my $code = shift;
    die "add_block_preprocessor: code reference expected\n"
        unless ref $code eq 'CODE';
    push @BlockPreprocessors, $code;
}

sub add_response_body_check {
    my $code = shift;
    die "add_response_body_check: code reference expected\n"
        unless ref $code eq 'CODE';
    push @ResponseBodyChecks, $code;
}

# ---------------------------------------------------------------------------
# Comparison helpers
# ---------------------------------------------------------------------------

sub _printable {
    my $s = shift;
    return $s =~ /\A[\x09\x0a\x0d\x20-\x7e]*\z/;
}

sub _hex_excerpt {
    my ($s, $off) = @_;
    my $start = $off > 16 ? $off - 16 : 0;
    my $chunk = substr($s, $start, 48);
    my $hex = join ' ', map { sprintf '%02x', ord } split //, $chunk;
    return "at $start: $hex";
}

# String comparison that copes with long and binary strings: on failure it
# reports the lengths and the first differing offset instead of dumping
# the whole thing.  A Regexp "expected" does a like() instead.
sub is_str {
    my ($got, $expected, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;

    if (ref $expected && ref $expected eq 'Regexp') {
        return Test::More::like($got, $expected, $name);
    }

    if (!defined $got || !defined $expected) {
        return Test::More::is($got, $expected, $name);
    }

    my $short = length($got) + length($expected) < 4000;
    if ($NoLongString
        || ($short && _printable($got) && _printable($expected)))
    {
        return Test::More::is($got, $expected, $name);
    }

    if ($got eq $expected) {
        return Test::More::pass($name);
    }

    my $i = 0;
    my $min = length($got) < length($expected)
              ? length($got) : length($expected);
    $i++ while $i < $min && substr($got, $i, 1) eq substr($expected, $i, 1);
    Test::More::fail($name);
    Test::More::diag(sprintf(
        "    got length %d, expected length %d, first difference at"
        . " offset %d\n    got      %s\n    expected %s",
        length($got), length($expected), $i,
        _hex_excerpt($got, $i), _hex_excerpt($expected, $i)));
    return 0;
}

# ---------------------------------------------------------------------------
# Block helpers
# ---------------------------------------------------------------------------

sub _section_filters {
    my ($block, $section) = @_;
    my $map = eval { $block->_section_map };
    return '' unless ref $map eq 'HASH' && $map->{$section};
    my $f = $map->{$section}{filters};
    return defined $f ? $f : '';
}

sub _is_eval_section {
    my ($block, $section) = @_;
    return _section_filters($block, $section) =~ /\beval\b/;
}

# Test::Base's "eval" filter returns $@ as the section value when the code
# dies: make that visible instead of comparing against an error message.
sub _warn_eval_errors {
    my $block = shift;
    my $map = eval { $block->_section_map } || {};
    for my $section (sort keys %$map) {
        next unless _is_eval_section($block, $section);
        my $v = $block->$section;
        if (defined $v && !ref $v
            && $v =~ /\bat \(eval \d+\) line \d+\.?\s*\z/)
        {
            Test::More::diag($block->name
                . " - section '$section': the eval seems to have died: $v");
        }
    }
}

# A section's value in scalar context.  (Block accessors return a list in
# list context, and an empty one for a missing section, which would shift
# function arguments.)
sub _sec {
    my ($block, $section) = @_;
    my $v = $block->$section;
    return $v;
}

# Value for request number $i: arrays are indexed, scalars shared.
sub _nth {
    my ($v, $i) = @_;
    return $v->[$i] if ref $v eq 'ARRAY';
    return $v;
}

sub _strip {
    my $s = shift;
    return undef unless defined $s;
    $s =~ s/^\s+|\s+$//g;
    return $s;
}

# ---------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------

# Parse a "--- more_headers" value into a list of [name, value] pairs.
sub _parse_more_headers {
    my $text = shift;
    return () unless defined $text;
    $text = expand_env_in_text($text, 'more_headers');
    my @h;
    for my $line (split /\n/, $text) {
        $line =~ s/\r$//;
        next unless $line =~ /\S/;
        if ($line =~ /^\s*([^:]+?)\s*:\s?(.*?)\s*$/) {
            push @h, [$1, $2];
        } else {
            die "Bad more_headers line: '$line'\n";
        }
    }
    return @h;
}

# Turn one "--- request" value (a string, or an array ref of packets whose
# first element holds the request line) into a request description:
#   { parts => [ { value => BYTES, delay_before => SECS }, ... ],
#     method => 'GET' }
sub _build_request {
    my ($block, $spec, $more_headers, $trim_body) = @_;

    my @packets = ref $spec eq 'ARRAY' ? @$spec : ($spec);
    my $first = shift @packets;
    my $first_delay = 0;
    if (ref $first eq 'HASH') {
        $first_delay = $first->{delay_before} || 0;
        $first = $first->{value};
    }
    $first = '' unless defined $first;

    # Leading blank lines and "#" comment lines are ignored.
    $first =~ s/\A(?:[ \t]*(?:#[^\n]*)?\n)+//;
    my ($line, $body) = split /\n/, $first, 2;
    $line = '' unless defined $line;
    $body = '' unless defined $body;
    $line =~ s/^\s+|\s+$//g;
    $line = expand_env_in_text($line, 'request');

    my ($method, $uri, $proto) = split /\s+/, $line, 3;
    die $block->name . " - request line should be non-empty\n"
        unless defined $method && length $method;
    $uri = '/' unless defined $uri && length $uri;
    $proto = 'HTTP/1.1' unless defined $proto && length $proto;

    if ($trim_body) {
        $body =~ s/^\s+|\s+$//g;
    }

    my @rest;
    my $body_len = length $body;
    for my $p (@packets) {
        if (ref $p eq 'HASH') {
            push @rest, { value => $p->{value},
                          delay_before => $p->{delay_before} || 0 };
        } else {
            push @rest, { value => $p, delay_before => 0 };
        }
        $body_len += length $rest[-1]{value};
    }

    my %have = map { (lc $_->[0] => 1) } @$more_headers;
    my $head = "$method $uri $proto\r\n";
    $head .= "Host: localhost\r\n" unless $have{host};
    $head .= "Connection: close\r\n" unless $have{connection};
    $head .= "$_->[0]: $_->[1]\r\n" for @$more_headers;
    if ($body_len > 0 && !$have{'content-length'}
        && !$have{'transfer-encoding'})
    {
        $head .= "Content-Length: $body_len\r\n";
    }
    $head .= "\r\n";

    return {
        method => uc $method,
        parts  => [ { value => $head . $body, delay_before => $first_delay },
                    @rest ],
    };
}

# All the requests of a block, in order.
sub _block_requests {
    my $block = shift;

    if (defined(my $raw = _sec($block, 'raw_request'))) {
        my @parts = ref $raw eq 'ARRAY' ? @$raw : ($raw);
        @parts = map {
            ref $_ eq 'HASH'
                ? { value => $_->{value},
                    delay_before => $_->{delay_before} || 0 }
                : { value => $_, delay_before => 0 }
        } @parts;
        my $delay = parse_time(_sec($block, 'raw_request_middle_delay'));
        if ($delay) {
            $_->{delay_before} ||= $delay for @parts[1 .. $#parts];
        }
        my ($method) = ($parts[0]{value} =~ /^\s*(\S+)/);
        return ({ method => uc($method || 'GET'), parts => \@parts });
    }

    my $req = _sec($block, 'request');
    return () unless defined $req;

    my $trim = !_is_eval_section($block, 'request');
    my @specs = ref $req eq 'ARRAY' ? @$req : ($req);
    my $mh = _sec($block, 'more_headers');
    my @reqs;
    for my $i (0 .. $#specs) {
        my @h = _parse_more_headers(_nth($mh, $i));
        push @reqs, _build_request($block, $specs[$i], \@h, $trim);
    }
    return @reqs;
}

# Send one request over a fresh TCP connection and read the response until
# the server closes it.  Returns ($raw_response, $error) where $error is
# undef, 'timeout' or a connection error message.
sub _do_request {
    my ($req, $timeout) = @_;

    my $sock = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1',
        PeerPort => $ServerPort,
        Proto    => 'tcp',
        Timeout  => $timeout,
    );
    return (undef, "cannot connect to 127.0.0.1:$ServerPort: $@")
        unless $sock;
    binmode $sock;
    $sock->blocking(0);
    my $sel = IO::Select->new($sock);

    for my $part (@{ $req->{parts} }) {
        Time::HiRes::sleep($part->{delay_before}) if $part->{delay_before};
        my $data = $part->{value};
        my $off = 0;
        while ($off < length $data) {
            my @ready = $sel->can_write($timeout);
            if (!@ready) {
                close $sock;
                return (undef, 'timeout');
            }
            my $n = syswrite $sock, $data, length($data) - $off, $off;
            if (!defined $n) {
                next if $!{EAGAIN} || $!{EWOULDBLOCK} || $!{EINTR};
                # The server may answer (e.g. 413) and close early: go read.
                last;
            }
            $off += $n;
        }
    }

    my $resp = '';
    while (1) {
        my @ready = $sel->can_read($timeout);
        if (!@ready) {
            close $sock;
            return ($resp, 'timeout');
        }
        my $n = sysread $sock, my $buf, 65536;
        if (!defined $n) {
            next if $!{EAGAIN} || $!{EWOULDBLOCK} || $!{EINTR};
            my $err = "$!";
            close $sock;
            # A reset after a complete response is harmless.
            return ($resp, length $resp ? undef : "read error: $err");
        }
        last if $n == 0;
        $resp .= $buf;
    }
    close $sock;
    return ($resp, undef);
}

# Decode a chunked body.  Returns ($body, $error).
sub _decode_chunked {
    my $data = shift;
    my $body = '';
    my $pos = 0;
    while (1) {
        my $eol = index $data, "\r\n", $pos;
        return ($body, 'truncated chunk size line') if $eol < 0;
        my $line = substr $data, $pos, $eol - $pos;
        return ($body, "bad chunk size line '$line'")
            unless $line =~ /^([0-9a-fA-F]+)[ \t]*(?:;.*)?$/;
        my $size = hex $1;
        $pos = $eol + 2;
        if ($size == 0) {
            # Skip trailers up to the final empty line.
            while (1) {
                my $e = index $data, "\r\n", $pos;
                return ($body, 'truncated chunked trailer') if $e < 0;
                last if $e == $pos;
                $pos = $e + 2;
            }
            $pos += 2;
            return ($body, 'data after the last chunk')
                if $pos < length $data;
            return ($body, undef);
        }
        return ($body, 'truncated chunk data')
            if $pos + $size + 2 > length $data;
        $body .= substr $data, $pos, $size;
        $pos += $size;
        return ($body, 'missing CRLF after chunk data')
            unless substr($data, $pos, 2) eq "\r\n";
        $pos += 2;
    }
}

# Parse a raw HTTP/1.x response.
sub _parse_response {
    my ($raw, $method) = @_;
    my %res = (status => undef, headers => {}, header_list => [],
               raw_headers => '', body => '', error => undef);

    if (!defined $raw || !length $raw) {
        $res{error} = 'empty response';
        return \%res;
    }

    my $end = index $raw, "\r\n\r\n";
    if ($end < 0) {
        $res{error} = 'incomplete response header';
        $res{raw_headers} = $raw;
        return \%res;
    }
    my $head = substr $raw, 0, $end + 2;
    my $data = substr $raw, $end + 4;
    $res{raw_headers} = $head;

    my @lines = split /\r\n/, $head;
    my $status_line = shift @lines;
    if ($status_line =~ m{^HTTP/(\d+\.\d+)\s+(\d{3})(?:\s+(.*))?$}) {
        @res{qw(protocol status reason)} = ($1, $2, $3);
    } else {
        $res{error} = "bad status line '$status_line'";
        return \%res;
    }

    for my $line (@lines) {
        if ($line =~ /^([^:\s]+)\s*:\s*(.*?)\s*$/) {
            push @{ $res{header_list} }, [$1, $2];
            push @{ $res{headers}{lc $1} }, $2;
        } elsif ($line =~ /^\s+(.*?)\s*$/ && @{ $res{header_list} }) {
            # obsolete line folding
            $res{header_list}[-1][1] .= " $1";
            $res{headers}{lc $res{header_list}[-1][0]}[-1] .= " $1";
        }
    }

    my $status = $res{status};
    if ($method eq 'HEAD' || $status =~ /^1/ || $status == 204
        || $status == 304)
    {
        $res{body} = '';
        return \%res;
    }

    my $te = header_value(\%res, 'Transfer-Encoding');
    my $cl = header_value(\%res, 'Content-Length');
    if (defined $te && $te =~ /\bchunked\b/i) {
        my ($body, $err) = _decode_chunked($data);
        $res{body} = $body;
        $res{error} = "chunked decoding: $err" if $err;
    } elsif (defined $cl && $cl =~ /^\d+$/) {
        if (length $data < $cl) {
            $res{error} = sprintf 'truncated body: Content-Length %d, got %d'
                                  . ' bytes', $cl, length $data;
            $res{body} = $data;
        } else {
            $res{error} = sprintf 'extra %d bytes after the body',
                                  length($data) - $cl
                if length $data > $cl;
            $res{body} = substr $data, 0, $cl;
        }
    } else {
        $res{body} = $data;
    }
    return \%res;
}

# A response header's value (multiple ones joined by ", "), or undef.
sub header_value {
    my ($res, $name) = @_;
    my $v = $res->{headers}{lc $name};
    return undef unless $v;
    return join ', ', @$v;
}

# ---------------------------------------------------------------------------
# Expectation checks
# ---------------------------------------------------------------------------

my %BodyFilters = (
    md5_hex  => \&Digest::MD5::md5_hex,
    sha1_hex => \&Digest::SHA::sha1_hex,
    length   => sub { length $_[0] },
    uc       => sub { uc $_[0] },
    lc       => sub { lc $_[0] },
    ucfirst  => sub { ucfirst $_[0] },
    lcfirst  => sub { lcfirst $_[0] },
);

sub _apply_body_filters {
    my ($filters, $body, $i) = @_;
    return $body unless defined $filters;
    if (ref $filters eq 'ARRAY' && @$filters && ref $filters->[0] eq 'ARRAY')
    {
        $filters = $filters->[$i];       # per-request filter lists
        return $body unless defined $filters;
    }
    my @list = ref $filters eq 'ARRAY' ? @$filters
             : ref $filters eq 'CODE'  ? ($filters)
             : split ' ', $filters;
    for my $f (@list) {
        my $code = ref $f eq 'CODE' ? $f : $BodyFilters{$f}
            or die "unknown response_body_filters filter '$f'\n";
        $body = $code->($body);
    }
    return $body;
}

sub _header_lines {
    my $spec = shift;
    return () unless defined $spec;
    if (ref $spec eq 'HASH') {
        return map { [$_, $spec->{$_}] } sort keys %$spec;
    }
    my @out;
    for my $line (split /\n/, $spec) {
        next unless $line =~ /\S/;
        if ($line =~ /^\s*!\s*([^:\s]+)\s*$/) {
            push @out, [$1, undef];             # must be absent
        } elsif ($line =~ /^\s*([^:]+?)\s*:\s*(.*?)\s*$/) {
            push @out, [$1, $2];
        } else {
            die "Bad response_headers line: '$line'\n";
        }
    }
    return @out;
}

sub _check_response {
    my ($block, $res, $i, $rep) = @_;
    my $name = $block->name;
    my $tag = "(req $i, repeat $rep)";

    # Status code: always checked (default 200) unless error_code_like.
    if (defined(my $like = _nth(_sec($block, 'error_code_like'), $i))) {
        Test::More::like($res->{status} // '', qr/$like/,
                         "$name - status code ok $tag");
    } else {
        my $code = _nth(_sec($block, 'error_code'), $i);
        $code = 200 unless defined $code;
        $code = _strip($code);
        Test::More::is($res->{status} // '', $code,
                       "$name - status code ok $tag");
    }

    my $hdrs = _nth(_sec($block, 'response_headers'), $i);
    for my $h (_header_lines($hdrs)) {
        my ($key, $want) = @$h;
        my $got = header_value($res, $key);
        if (!defined $want) {
            Test::More::ok(!defined $got,
                           "$name - header $key not present $tag")
                or Test::More::diag("    $key: $got");
        } else {
            Test::More::is($got // '', $want,
                           "$name - header $key ok $tag");
        }
    }

    my $hdrs_like = _nth(_sec($block, 'response_headers_like'), $i);
    for my $h (_header_lines($hdrs_like)) {
        my ($key, $pat) = @$h;
        my $got = header_value($res, $key);
        if (!defined $pat) {
            Test::More::ok(!defined $got,
                           "$name - header $key not present $tag");
        } else {
            Test::More::like($got // '', qr/$pat/,
                             "$name - header $key like ok $tag");
        }
    }

    my $raw_like = _nth(_sec($block, 'raw_response_headers_like'), $i);
    if (defined(my $pat = $raw_like)) {
        $pat = qr/$pat/s unless ref $pat;
        Test::More::like($res->{raw_headers}, $pat,
                         "$name - raw_response_headers_like $tag");
    }
    my $raw_unlike = _nth(_sec($block, 'raw_response_headers_unlike'), $i);
    if (defined(my $pat = $raw_unlike)) {
        $pat = qr/$pat/s unless ref $pat;
        Test::More::unlike($res->{raw_headers}, $pat,
                           "$name - raw_response_headers_unlike $tag");
    }

    my $body = _apply_body_filters(_sec($block, 'response_body_filters'),
                                   $res->{body}, $i);

    if (defined(my $want = _nth(_sec($block, 'response_body'), $i))) {
        # The real harness replaces a literal "$ServerPort" here.
        $want =~ s/\$ServerPort\b/$ServerPort/g if !ref $want;
        is_str($body, $want, "$name - response_body - response is expected"
               . " $tag");
    } elsif (defined($want = _nth(_sec($block, 'response_body_eval'), $i))) {
        is_str($body, $want, "$name - response_body_eval - response is"
               . " expected $tag");
    }

    for my $sec (qw(response_body_like response_body_unlike)) {
        my $pat = _nth(_sec($block, $sec), $i);
        next unless defined $pat;
        if (!ref $pat) {
            # Like the real harness: no chomp, so a multi-line section's
            # trailing newline is part of the pattern ("...$\n" still
            # matches a body ending in a newline).
            $pat =~ s/\$ServerPort\b/$ServerPort/g;
            $pat = qr/$pat/s;
        }
        my $msg = "$name - $sec - response is expected $tag";
        if ($sec eq 'response_body_like') {
            Test::More::like($body, $pat, $msg);
        } else {
            Test::More::unlike($body, $pat, $msg);
        }
    }

    for my $check (@ResponseBodyChecks) {
        $check->($block, $res->{body}, $i, $rep, 0);
    }
}

# Patterns of an error_log / no_error_log section: substrings (one per line
# for the text form) or qr// objects.
sub _log_patterns {
    my $spec = shift;
    return () unless defined $spec;
    return ($spec) if ref $spec eq 'Regexp';
    return @$spec if ref $spec eq 'ARRAY';
    return grep { length } map { s/\r$//r } split /\n/, $spec;
}

sub _line_matches {
    my ($lines, $pat) = @_;
    for my $l (@$lines) {
        if (ref $pat) {
            return 1 if $l =~ $pat;
        } else {
            return 1 if index($l, $pat) >= 0;
        }
    }
    return 0;
}

sub _read_log_from {
    my ($file, $offset) = @_;
    open my $in, '<:raw', $file or return '';
    seek $in, $offset, 0 if $offset;
    local $/;
    my $s = <$in>;
    close $in;
    return defined $s ? $s : '';
}

sub _check_error_log {
    my ($block, $offset, $rep, $extra) = @_;
    my $name = $block->name;
    my @want = _log_patterns(_sec($block, 'error_log'));
    my @dont = _log_patterns(_sec($block, 'no_error_log'));

    my $text;
    my $deadline = Time::HiRes::time() + $ErrLogWait;
    while (1) {
        $text = _read_log_from($ErrLogFile, $offset);
        $text .= $extra if defined $extra;
        my @lines = split /\n/, $text;
        my $missing = grep { !_line_matches(\@lines, $_) } @want;
        last if !$missing || Time::HiRes::time() >= $deadline;
        Time::HiRes::sleep(0.05);
    }
    my @lines = split /\n/, $text;

    for my $pat (@want) {
        my $shown = ref $pat ? "$pat" : "\"$pat\"";
        Test::More::ok(_line_matches(\@lines, $pat),
            "$name - pattern $shown should match a line in error.log"
            . " (repeat $rep)");
    }
    for my $pat (@dont) {
        my $shown = ref $pat ? "$pat" : "\"$pat\"";
        my @hits = grep { _line_matches([$_], $pat) } @lines;
        Test::More::ok(!@hits,
            "$name - pattern $shown should not match any line in error.log"
            . " (repeat $rep)")
            or Test::More::diag("    matched: $hits[0]");
    }

    # Like the real harness, point out serious errors nobody asked about.
    for my $l (@lines) {
        next unless $l =~ /\[(?:alert|crit|emerg)\]|exited on signal/;
        next if grep { _line_matches([$l], $_) } @want, @dont;
        Test::More::diag("$name - error.log: $l");
    }
}

# ---------------------------------------------------------------------------
# Running blocks
# ---------------------------------------------------------------------------

sub _run_skip_eval {
    my $block = shift;
    my $spec = _sec($block, 'skip_eval');
    return 0 unless defined $spec;
    $spec =~ s/^\s+|\s+$//g;
    my ($count, $code) = ($spec =~ /^(\d+)\s*:\s*(.*)$/s)
        or die $block->name . " - bad skip_eval value '$spec'\n";
    my $cond = eval "package main; $code";
    die $block->name . " - skip_eval code died: $@" if $@;
    return 0 unless $cond;
    SKIP: {
        Test::More::skip($block->name . " - skip_eval", $count);
    }
    return 1;
}

sub run_test {
    my $block = shift;
    my $name = $block->name;

    $_->($block) for @BlockPreprocessors;
    _warn_eval_errors($block);

    return if _run_skip_eval($block);

    if (defined(my $init = _sec($block, 'init'))) {
        eval "package main; $init";
        die "$name - init code died: $@" if $@;
    }

    my $log_level = _strip(_sec($block, 'log_level'));
    my $timeout = parse_time(_sec($block, 'timeout')) || $Timeout;

    my @requests = _block_requests($block);
    my $must_die = _sec($block, 'must_die');

    if (!$NoNginxManager) {
        stop_nginx();
        setup_server_root();
        write_user_files(_sec($block, 'user_files'), $name);
        write_config_file(
            map({ ($_ => expand_env_in_text(_sec($block, $_), $_)) }
                qw(main_config post_main_config http_config config)),
            log_level        => $log_level,
            server_name      => _strip(_sec($block, 'server_name')),
        );
        truncate_logs();

        my ($ok, $out, $code) = start_nginx();

        if (defined $must_die) {
            if ($ok) {
                Test::More::fail("$name - nginx should have died but"
                                 . " started");
                stop_nginx();
            } elsif (length(my $want = _strip($must_die))) {
                Test::More::is($code, $want, "$name - nginx exit code");
            }
            _check_error_log($block, 0, 0, $out);
            return;
        }

        if (!$ok) {
            Test::More::fail("$name - cannot start nginx: $out");
            my $log = _read_log_from($ErrLogFile, 0);
            Test::More::diag("error.log:\n$log") if length $log;
            return;
        }
    }

    for my $rep (0 .. $RepeatEach - 1) {
        my $offset = $CheckAccumErrLog ? 0 : (-s $ErrLogFile || 0);

        for my $i (0 .. $#requests) {
            my $req = $requests[$i];
            my ($raw, $err) = _do_request($req, $timeout);
            if (defined $err) {
                if ($err eq 'timeout') {
                    Test::More::fail("ERROR: client socket timed out -"
                                     . " $name")
                        unless defined _sec($block, 'abort');
                } else {
                    Test::More::fail("ERROR: $err - $name");
                }
            }
            next if defined _sec($block, 'ignore_response');

            my $res;
            if (defined _sec($block, 'http09')) {
                $res = { status => undef, headers => {}, header_list => [],
                         raw_headers => '', body => $raw // '' };
            } else {
                $res = _parse_response($raw, $req->{method});
                # Framing errors (Content-Length not matching the bytes
                # sent, broken chunked encoding) are protocol bugs: fail,
                # unless the transport already failed (timeout / reset).
                Test::More::fail("ERROR: malformed response:"
                                 . " $res->{error} - $name")
                    if $res->{error} && !defined $err;
            }
            _check_response($block, $res, $i, $rep);

            if (!$NoNginxManager && !nginx_alive()) {
                Test::More::diag("$name - nginx is no longer running"
                                 . " (crashed?)");
            }
        }

        if (defined(my $wait = _sec($block, 'wait'))) {
            Time::HiRes::sleep(parse_time($wait));
        } elsif (defined _sec($block, 'error_log')
                 || defined _sec($block, 'no_error_log'))
        {
            Time::HiRes::sleep(0.02);
        }
        _check_error_log($block, $offset, $rep);
    }
}

sub run_tests {
    my $nginx = find_nginx_binary();
    if (!$nginx && !$NoNginxManager) {
        bail_out("nginx binary '$NginxBinary' not found (set"
                 . " TEST_NGINX_BINARY)\n");
    }

    for my $block (blocks()) {
        run_test($block);
    }

    if (!$ENV{TEST_NGINX_NO_CLEAN} && !$NoNginxManager) {
        stop_nginx();
    }

    my $tb = Test::More->builder;
    $tb->done_testing unless $tb->has_plan;
}

1;

__END__

=head1 NAME

Test::Nginx::Socket - minimal Test::Nginx::Socket-compatible scaffold
(smart-imaging test harness)

=head1 SYNOPSIS

    use Test::Nginx::Socket 'no_plan';

    repeat_each(2);
    run_tests();

    __DATA__

    === TEST 1: hello
    --- config
        location = /t {
            return 200 "hello\n";
        }
    --- request
    GET /t
    --- response_body
    hello
    --- no_error_log
    [error]

Run it with

    TEST_NGINX_BINARY=/usr/sbin/nginx \
    TEST_NGINX_LOAD_MODULES=/path/to/libsmart_imaging.so \
        prove -I t/lib -r t/

=head1 DESCRIPTION

CPAN's L<Test::Nginx> is not available on our machines, so this project
ships a small, independent reimplementation of the B<subset> of its
C<Test::Nginx::Socket> interface that our test files use.  The C<.t> files
are written in the standard Test::Nginx block format and use only the real
module's public interface, so they also run unchanged with the real
Test::Nginx installed (it is found first unless C<-I t/lib> is given, and
it ignores F<t/lib>).

It is built on L<Test::Base> (Debian: C<libtest-base-perl>).  Each block:

=over

=item 1.

stops the nginx of the previous block (TERM, then wait for the pid file to
disappear, escalating to KILL),

=item 2.

recreates F<t/servroot/html>, writes the C<--- user_files>, writes
F<t/servroot/conf/nginx.conf> and truncates F<logs/error.log> and
F<logs/access.log>,

=item 3.

starts C<nginx -p t/servroot/ -c conf/nginx.conf> (C<daemon on>),

=item 4.

sends each request C<repeat_each()> times over a fresh TCP connection
(HTTP/1.1, C<Host: localhost>, C<Connection: close>), reads to EOF, parses
status line, headers and body (de-chunking C<Transfer-Encoding: chunked>),
and checks the expectations with L<Test::More>,

=item 5.

checks C<--- error_log> / C<--- no_error_log> against the part of
F<error.log> written since that repetition started.

=back

=head2 Generated nginx.conf

    load_module /abs/path.so;          # one per TEST_NGINX_LOAD_MODULES entry
    worker_processes  1;               # workers()
    daemon on;
    master_process off;                # master_on()
    error_log .../logs/error.log debug;   # log_level() / --- log_level
    pid       .../logs/nginx.pid;
    user root;                         # only when running as root
    env LD_PRELOAD; ...                # env_to_nginx()
    <main_config>
    http {
        access_log .../logs/access.log;
        default_type text/plain;
        keepalive_timeout  68;
        <http_config>
        server {
            listen          1984;      # TEST_NGINX_SERVER_PORT
            server_name     localhost; # --- server_name
            client_max_body_size 30M;
            <config>
            location / { root .../html; index index.html index.htm; }
        }
    }
    events { accept_mutex off; worker_connections 64; }
    <post_main_config>

The default C<location /> is left out when C<--- config> has its own
C<location / {> or after C<no_root_location()>.

=head2 Functions

C<run_tests>, C<repeat_each>, C<workers>, C<master_on>, C<master_off>,
C<log_level>, C<no_long_string>, C<no_shuffle> (blocks always run in file
order here), C<no_root_location>, C<config_preamble>, C<server_name>,
C<server_port>, C<server_root>, C<html_dir>, C<env_to_nginx>,
C<check_accum_error_log>, C<add_block_preprocessor>,
C<add_response_body_check>, C<add_cleanup_handler>, C<is_str>, C<bail_out>,
plus everything L<Test::Base> exports (C<plan>, C<blocks>, C<is>, ...).
C<use Test::Nginx::Socket 'no_plan';> and C<plan tests =E<gt> ...> both work;
with neither, C<run_tests> ends with C<done_testing>.

=head2 Sections

=over

=item main_config, http_config, config, post_main_config, server_name

Configuration pieces (see above).  C<$TEST_NGINX_FOO> / C<${TEST_NGINX_FOO}>
is replaced by C<$ENV{TEST_NGINX_FOO}> in them (an undefined variable bails
out).  C<TEST_NGINX_SERVER_PORT> and C<TEST_NGINX_HTML_DIR> are always set.

=item user_files

C<< >>> name [mtime] >> headers followed by the content, or with C<eval>
an array ref C<[ [name, content, mtime?], ... ]> (binary-safe).  Files are
created under the html dir; sub-directories are created as needed.

=item request

C<METHOD URI [PROTOCOL]> (default protocol C<HTTP/1.1>) on the first
non-comment line, the request body on the following lines (leading and
trailing white space trimmed unless the section uses C<eval>).
C<Content-Length> is added for a non-empty body.  With C<eval> the value may
be an array ref of requests (one response expectation per request: use array
refs in the expectation sections), and a request may itself be an array ref
of packets (strings or C<< { value => ..., delay_before => secs } >>).

=item raw_request

Sent verbatim (a string, or an array ref of packets);
C<raw_request_middle_delay> delays packets after the first.

=item more_headers

Extra C<Name: value> request header lines (array ref for per-request values).
A C<Host> or C<Connection> given here replaces the default one.

=item error_code, error_code_like

Expected status (default 200; always checked, one test per request).

=item response_headers, response_headers_like

=item raw_response_headers_like, raw_response_headers_unlike

C<Name: value> lines (exact, resp. regex); C<!Name> means the header must be
absent; C<Name:> with an empty value passes for an absent or empty header.
Repeated headers are compared joined with C<", ">.  One test per line.

=item response_body, response_body_like, response_body_unlike

=item response_body_filters

Byte-exact body comparison (use C<eval> for binary expectations; a C<qr//>
value does a regex match), regex match (C</s>), and the builtin filters
C<md5_hex sha1_hex length uc lc ucfirst lcfirst> or code refs.  As in the
real harness, a literal C<$ServerPort> in the expected body or pattern is
replaced by the port, and a text-form C<response_body_like> keeps its
trailing newline (write C<--- response_body_like: pattern> on one line, or
end the pattern with C<$>).

=item error_log, no_error_log

Each line is a substring that must (must not) appear in a line of
F<error.log>; with C<eval> a C<qr//> or an array ref of strings and
C<qr//>s.  One test per pattern and repetition.  Positive patterns are
polled for up to 1 s.  Lines with C<[alert]>, C<[crit]>, C<[emerg]> or
C<exited on signal> that no pattern mentions are reported with C<diag>.

=item log_level, timeout, wait, abort, ignore_response, http09

=item init, skip_eval, must_die

Per-block error log level; client timeout (C<1.5>, C<2s>, C<50ms>; default
3 s or C<TEST_NGINX_TIMEOUT>); seconds to wait before the log checks; do not
fail on timeout; skip response checks; take the whole response as the body;
Perl code to run first; C<N: perl-expr> skips N tests when true; nginx must
fail to start (optionally with the given exit code; C<error_log> then also
sees nginx's startup output, and no request is sent).

=item ONLY, SKIP, LAST

Handled by Test::Base.

=back

=head2 Environment

C<TEST_NGINX_BINARY> (default C<nginx> from C<PATH>),
C<TEST_NGINX_SERVER_PORT> / C<TEST_NGINX_PORT> (default 1984),
C<TEST_NGINX_SERVROOT> (default F<t/servroot> under the current directory),
C<TEST_NGINX_LOAD_MODULES> (space separated C<.so> paths; relative paths are
resolved against the current directory), C<TEST_NGINX_TIMEOUT>,
C<TEST_NGINX_NO_CLEAN> (leave the last nginx running),
C<TEST_NGINX_NO_NGINX_MANAGER> (do not start/stop nginx),
C<TEST_NGINX_VERBOSE>.

=head1 LIMITATIONS

Not supported: HUP-reload mode, valgrind/stap/check-leak/benchmark modes,
HTTP/2 and HTTP/3, pipelined requests, the embedded TCP/UDP servers,
C<grep_error_log>, C<access_log> checks, C<skip_nginx>, block shuffling, and
config reuse between blocks (a block without C<--- config> gets an empty
one).  nginx is restarted for every block.  Test names differ from the real
module's.

=cut
