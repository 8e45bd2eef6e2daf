"""The table of provider replies smtpkit explains, one row per documented reply.

Every row was checked against the page in its ``doc_url`` (for NetEase, the
page its own replies link to); ``example`` is the reply as the provider
documents it, and the tests replay each one from a real server.  To add a
provider, add its rows here with their source, and a line to
docs/guide/providers.md (a test keeps the two in step).
"""

# Chinese hints use Chinese punctuation (full-width commas) on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

import re
from typing import Final

from ._reply_reasons import ReplyReason
from ._reply_reasons import Rule as _Rule

__all__ = ["RULES"]


def _words(pattern: str) -> re.Pattern[str]:
    """Compile a case-insensitive pattern whose ``.`` spans the reply's lines."""
    return re.compile(pattern, re.IGNORECASE | re.DOTALL)


# The page NetEase links from its own replies ("please see
# http://mail.163.com/help/help_spam_16.htm?ip=..."): its table of reply codes.
_NETEASE: Final = "https://mail.163.com/help/help_spam_16.htm"
_NETEASE_TAIL: Final = "163 smtp7,C8CowAAnpFyamC9fa52cAg--.56912S2 1596954778"
_GOOGLE: Final = "https://support.google.com/mail/?p="
_MS_SMTP_AUTH: Final = (
    "https://learn.microsoft.com/en-us/exchange/clients-and-mobile-in-exchange-online/"
    "authenticated-client-smtp-submission"
)
_SES_QUOTAS: Final = (
    "https://docs.aws.amazon.com/ses/latest/dg/manage-sending-quotas-errors.html"
)
_ALIYUN: Final = (
    "https://www.alibabacloud.com/help/zh/directmail/latest/"
    "summary-of-common-email-return-codes-and-solutions"
)
_POSTCONF: Final = "https://www.postfix.org/postconf.5.html#"


def _netease(
    code: int,
    tag: str,
    reason: ReplyReason,
    hint: str,
    hint_zh: str,
    *,
    step: str,
    codes: frozenset[int] | None = None,
    retry_after: float | None = None,
) -> _Rule:
    return _Rule(
        provider="NetEase",
        codes=codes or frozenset({code}),
        pattern=re.compile(rf"(?<![\w:]){re.escape(tag)}\b"),
        reason=reason,
        hint=hint,
        hint_zh=hint_zh,
        doc_url=_NETEASE,
        example=f"{code} {tag} {_NETEASE_TAIL}",
        step=step,
        retry_after=retry_after,
    )


_NETEASE_RULES: Final = (
    _netease(
        421,
        "HL:ICC",
        ReplyReason.TOO_MANY_CONNECTIONS,
        "too many concurrent connections from this IP: use fewer connections",
        "该IP同时并发连接数过大，请降低IP并发连接数量",
        step="connect",
    ),
    _netease(
        421,
        "HL:IFC",
        ReplyReason.RATE_LIMITED,
        "this IP sent too much mail in a short time: lower the sending rate",
        "该IP短期内发送了大量信件，请降低发送频率",
        step="connect",
    ),
    _netease(
        421,
        "HL:REP",
        ReplyReason.IP_REPUTATION,
        "this IP sent to many addresses that do not exist: clean the recipient list",
        "该IP发送行为异常，存在接收者大量不存在情况，请核对发送列表有效性",
        step="connect",
    ),
    _netease(
        421,
        "HL:MEP",
        ReplyReason.IP_REPUTATION,
        "this IP sent with many forged sender domains: send from your real domain",
        "该IP存在大量伪造发送域域名行为，请使用真实有效的域名发送",
        step="connect",
    ),
    _netease(
        450,
        "MI:DMC",
        ReplyReason.TOO_MANY_MESSAGES_PER_CONNECTION,
        "too many messages on this connection: reconnect and carry on",
        "当前连接发送的邮件数量超出限制，请减少每次连接中投递的邮件数量",
        step="MAIL",
        codes=frozenset({450, 451}),
    ),
    _netease(
        450,
        "RP:DRC",
        ReplyReason.TOO_MANY_MESSAGES_PER_CONNECTION,
        "too many recipients on this connection: reconnect and carry on",
        "当前连接发送的收件人数量超出限制，请控制每次连接投递的邮件数量",
        step="RCPT",
    ),
    _netease(
        450,
        "DT:RBL",
        ReplyReason.IP_REPUTATION,
        "the sending IP is on one or more block lists (RBL): get it delisted",
        "发信IP位于一个或多个RBL里，请先申请移出黑名单",
        step="MAIL",
    ),
    _netease(
        450,
        "WM:BLI",
        ReplyReason.IP_REPUTATION,
        "this IP is not on NetEase's list of allowed sending addresses",
        "该IP不在网易允许的发送地址列表里",
        step="MAIL",
    ),
    _netease(
        450,
        "WM:BLU",
        ReplyReason.SENDER_NOT_ALLOWED,
        "this sender is not on NetEase's list of allowed senders",
        "此用户不在网易允许的发信用户列表里",
        step="MAIL",
    ),
    _netease(
        451,
        "DT:SPM",
        ReplyReason.CONTENT_REJECTED,
        "the content looks like spam and was refused for now: keep the message "
        "queued and retry in two minutes, or change its content",
        "邮件正文带有垃圾邮件特征，被临时拒收，请保持邮件队列，两分钟后重投邮件，或调整邮件内容",
        step="end of data",
        retry_after=120.0,
    ),
    _netease(
        451,
        "MI:SFQ",
        ReplyReason.QUOTA_EXCEEDED,
        "the sender's quota for a 15-minute period is spent: send less often",
        "发信人在15分钟内的发信数量超过限制，请控制发信频率",
        step="MAIL",
        retry_after=900.0,  # the page's 15-minute window
    ),
    _netease(
        451,
        "RP:QRC",
        ReplyReason.QUOTA_EXCEEDED,
        "the sender reached too many recipients recently and is blocked for a "
        "while: send less often",
        "发信方短期内累计的收件人数量超过限制，该发件人被临时禁止发信，请降低发信频率",
        step="RCPT",
    ),
    _netease(
        554,
        "DT:SPM",
        ReplyReason.CONTENT_REJECTED,
        "the content was judged as spam: change the message before sending again",
        "发送的邮件内容包含了未被许可的信息，或被系统识别为垃圾邮件，请修改内容后再发送",
        step="end of data",
    ),
    _Rule(
        provider="NetEase",
        codes=frozenset({451}),
        pattern=_words(r"too much fail authentication"),
        reason=ReplyReason.AUTH_LOCKED,
        hint="logins are blocked after too many failures: fix the password "
        "(authorization code) and wait before logging in again",
        hint_zh="登录失败次数过多，被临时禁止登录，请检查密码（授权码）与帐号验证设置",
        doc_url=_NETEASE,
        example="451 Requested mail action not taken: too much fail authentication",
        step="AUTH",
    ),
)

# Tencent's reply names its own help page (the authorization code, 授权码).
_QQ_AUTH_CODE: Final = (
    "https://service.mail.qq.com/cgi-bin/help?subtype=1&&id=28&&no=1001256"
)
_QQ_RULES: Final = (
    _Rule(
        provider="QQ Mail",
        codes=frozenset({535}),
        pattern=_words(r"login fail\.\s+please enter your authorization code"),
        reason=ReplyReason.AUTH_NEEDS_APP_PASSWORD,
        hint="QQ Mail takes an authorization code as the SMTP password, not the QQ "
        "password: turn on the SMTP service and generate a code in QQ Mail's "
        "account settings",
        hint_zh="QQ邮箱的SMTP登录密码是授权码，不是QQ密码：请在QQ邮箱“设置-账户”中"
        "开启SMTP服务并生成授权码",
        doc_url=_QQ_AUTH_CODE,
        example="535 Login Fail. Please enter your authorization code to login. "
        "More information in "
        "http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=28&&no=1001256",
        step="AUTH",
    ),
)

_GMAIL_RULES: Final = (
    _Rule(
        provider="Gmail",
        codes=frozenset({534}),
        enhanced="5.7.9",
        pattern=_words(r"application-specific password required"),
        reason=ReplyReason.AUTH_NEEDS_APP_PASSWORD,
        hint="the account uses 2-Step Verification: log in with an app password "
        "(or OAuth2), not the account password",
        doc_url=_GOOGLE + "InvalidSecondFactor",
        example="534-5.7.9 Application-specific password required. Learn more at\n"
        "534 5.7.9 https://support.google.com/mail/?p=InvalidSecondFactor - gsmtp",
        step="AUTH",
    ),
    _Rule(
        provider="Gmail",
        codes=frozenset({535}),
        enhanced="5.7.8",
        pattern=_words(r"username and password not accepted"),
        reason=ReplyReason.AUTH_FAILED,
        hint="Google refused the user name or password: check them, and with "
        "2-Step Verification use an app password (or OAuth2)",
        doc_url=_GOOGLE + "BadCredentials",
        example="535-5.7.8 Username and Password not accepted. Learn more at\n"
        "535 5.7.8 https://support.google.com/mail/?p=BadCredentials - gsmtp",
        step="AUTH",
    ),
    _Rule(
        provider="Gmail",
        codes=frozenset({421}),
        pattern=_words(r"unusual rate of\s+unsolicited mail.*\s+rate\s+limited"),
        reason=ReplyReason.RATE_LIMITED,
        hint="Gmail rate-limits this IP for an unusual rate of unsolicited mail: "
        "slow down and follow Google's bulk sender guidelines",
        doc_url=_GOOGLE + "UnsolicitedRateLimitError",
        example="421-4.7.28 [192.0.2.1] Our system has detected an unusual rate of\n"
        "421-4.7.28 unsolicited mail originating from your IP address. To protect our\n"
        "421-4.7.28 users from spam, mail sent from your IP address has been "
        "temporarily\n421-4.7.28 rate limited. Please visit\n"
        "421 4.7.28 https://support.google.com/mail/?p=UnsolicitedRateLimitError - "
        "gsmtp",
        step="end of data",
    ),
    _Rule(
        provider="Gmail",
        codes=frozenset({550}),
        enhanced="5.7.1",
        pattern=_words(r"unusual rate of\s+unsolicited mail.*\s+blocked"),
        reason=ReplyReason.IP_REPUTATION,
        hint="Gmail blocked this IP for an unusual rate of unsolicited mail: "
        "follow Google's bulk sender guidelines before sending again",
        doc_url=_GOOGLE + "UnsolicitedIPError",
        example="550-5.7.1 [192.0.2.1 1] Our system has detected an unusual rate of\n"
        "550-5.7.1 unsolicited mail originating from your IP address. To protect our\n"
        "550-5.7.1 users from spam, mail sent from your IP address has been blocked.\n"
        "550 5.7.1 https://support.google.com/mail/?p=UnsolicitedIPError - gsmtp",
        step="end of data",
    ),
    _Rule(
        provider="Gmail",
        codes=frozenset({550}),
        enhanced="5.7.1",
        # Google's own marker too: other servers word their refusals alike.
        pattern=_words(
            r"likely\s+unsolicited mail.*"
            r"(\bgsmtp\b|support\.google\.com/mail/\?p=UnsolicitedMessageError)"
        ),
        reason=ReplyReason.CONTENT_REJECTED,
        hint="Gmail judged this message as likely spam: change the message "
        "before sending again",
        doc_url=_GOOGLE + "UnsolicitedMessageError",
        example="550-5.7.1 [192.0.2.1 12] Our system has detected that this message is\n"
        "550-5.7.1 likely unsolicited mail. To reduce the amount of spam sent to Gmail,\n"
        "550 5.7.1 this message has been blocked. - gsmtp",
        step="end of data",
    ),
)

_MICROSOFT_RULES: Final = (
    _Rule(
        provider="Microsoft 365",
        codes=frozenset({535}),
        enhanced="5.7.139",
        pattern=_words(r"SmtpClientAuthentication is disabled"),
        reason=ReplyReason.SMTP_DISABLED,
        hint="SMTP AUTH is turned off for this tenant: an admin must enable it for "
        "the mailbox, or send with OAuth2 or Microsoft Graph",
        doc_url=_MS_SMTP_AUTH,
        example="535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is "
        "disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more "
        "information.",
        step="AUTH",
    ),
    _Rule(
        provider="Microsoft 365",
        codes=frozenset({535}),
        enhanced="5.7.139",
        pattern=_words(r"basic authentication is disabled"),
        reason=ReplyReason.SMTP_DISABLED,
        hint="basic authentication (password login) is disabled for SMTP: log in "
        "with OAuth2 (XOAuth2Auth)",
        doc_url=_MS_SMTP_AUTH,
        example="535 5.7.139 Authentication unsuccessful, basic authentication is "
        "disabled.",
        step="AUTH",
    ),
    _Rule(
        # Exchange's own reply (MS-SMTPNTLM), on premises as in Microsoft 365.
        provider="Microsoft Exchange / Microsoft 365",
        codes=frozenset({535}),
        enhanced="5.7.3",
        pattern=_words(r"^Authentication unsuccessful"),
        reason=ReplyReason.AUTH_FAILED,
        hint="the server refused the user name and password (or the OAuth2 "
        "token): check them",
        doc_url="https://learn.microsoft.com/en-us/openspecs/windows_protocols/"
        "ms-smtpntlm/62888982-a911-40fa-b587-50b5c69f7334",
        example="535 5.7.3 Authentication unsuccessful",
        step="AUTH",
    ),
)

_SES_RULES: Final = (
    _Rule(
        provider="Amazon SES",
        codes=frozenset({454}),
        pattern=_words(r"^Throttling failure: Maximum sending rate exceeded"),
        reason=ReplyReason.RATE_LIMITED,
        hint="the account's maximum sending rate is exceeded: send fewer messages "
        "per second (RateLimit)",
        doc_url=_SES_QUOTAS,
        example="454 Throttling failure: Maximum sending rate exceeded",
        step="MAIL",
    ),
    _Rule(
        provider="Amazon SES",
        codes=frozenset({454}),
        pattern=_words(r"^Throttling failure: Daily message quota exceeded"),
        reason=ReplyReason.QUOTA_EXCEEDED,
        hint="the account's 24-hour sending quota is spent: stop and send the rest "
        "later, or ask AWS for a higher quota",
        doc_url=_SES_QUOTAS,
        example="454 Throttling failure: Daily message quota exceeded",
        step="MAIL",
    ),
    _Rule(
        provider="Amazon SES",
        codes=frozenset({554}),
        pattern=_words(r"^Message rejected: Email address is not verified"),
        reason=ReplyReason.SENDER_NOT_ALLOWED,
        hint="an address (From, sender or Return-Path) is not a verified identity "
        "in this region: verify it, or leave the SES sandbox",
        doc_url="https://repost.aws/knowledge-center/ses-554-400-message-rejected-error",
        example="554 Message rejected: Email address is not verified. The following "
        "identities failed the check in region US-EAST-1: a@example.com",
        step="end of data",
    ),
)

_ALIYUN_RULES: Final = (
    _Rule(
        provider="Aliyun DirectMail",
        codes=frozenset({552}),
        pattern=_words(
            r"^(Daily|Monthly) sending quota exceeded|^Not enough sending quota"
        ),
        reason=ReplyReason.QUOTA_EXCEEDED,
        hint="the DirectMail sending quota is spent: send the rest later or raise the quota",
        hint_zh="发信额度超出限制，请稍后再发送或提升额度",
        doc_url=_ALIYUN,
        example="552 Daily sending quota exceeded",
        step="MAIL",
    ),
    _Rule(
        provider="Aliyun DirectMail",
        codes=frozenset({554}),
        pattern=_words(r"^Reject by content spam"),
        reason=ReplyReason.CONTENT_REJECTED,
        hint="the message was judged as spam: change its content before sending again",
        hint_zh="邮件被判为垃圾邮件，请调整发送内容后再次尝试发送",
        doc_url=_ALIYUN,
        example="554 Reject by content spam",
        step="end of data",
    ),
    _Rule(
        provider="Aliyun DirectMail",
        codes=frozenset({556}),
        pattern=_words(r"^The number of RCPTs is over size"),
        reason=ReplyReason.TOO_MANY_RECIPIENTS,
        hint="the message has more recipients than DirectMail allows: split it",
        hint_zh="邮件 RCPT 数量超限制，请拆分收件人后分别发送",
        doc_url=_ALIYUN,
        example="556 The number of RCPTs is over size",
        step="RCPT",
    ),
    _Rule(
        provider="Aliyun DirectMail",
        codes=frozenset({551}),
        pattern=_words(r"^Main account unavailable"),
        reason=ReplyReason.SMTP_DISABLED,
        hint="the DirectMail account may not send now: check its status in the console",
        hint_zh="当前账户处于限制外发或其他非正常发送状态，请登录邮件推送控制台查看账户状态",
        doc_url=_ALIYUN,
        example="551 Main account unavailable",
        step="MAIL",
    ),
)

# Postfix's own texts (smtpd), for the limits its postconf(5) page documents.
_POSTFIX_RULES: Final = (
    _Rule(
        provider="Postfix",
        codes=frozenset({421}),
        pattern=_words(r"Error: too many connections from"),
        reason=ReplyReason.TOO_MANY_CONNECTIONS,
        hint="the server limits connections from this client (at once or per "
        "minute): use fewer connections",
        doc_url=_POSTCONF + "smtpd_client_connection_count_limit",
        example="421 4.7.0 mx.example.com Error: too many connections from 192.0.2.1",
        step="connect",
    ),
    _Rule(
        provider="Postfix",
        codes=frozenset({450, 421}),
        pattern=_words(r"Error: too much mail from"),
        reason=ReplyReason.RATE_LIMITED,
        hint="the server limits messages per minute from this client: slow down",
        doc_url=_POSTCONF + "smtpd_client_message_rate_limit",
        example="450 4.7.1 Error: too much mail from 192.0.2.1",
        step="MAIL",
    ),
    _Rule(
        provider="Postfix",
        codes=frozenset({450, 421}),
        pattern=_words(r"Error: too many recipients from"),
        reason=ReplyReason.RATE_LIMITED,
        hint="the server limits recipients per minute from this client: slow down",
        doc_url=_POSTCONF + "smtpd_client_recipient_rate_limit",
        example="450 4.7.1 Error: too many recipients from 192.0.2.1",
        step="RCPT",
    ),
    _Rule(
        provider="Postfix",
        codes=frozenset({452}),
        pattern=_words(r"^Error: too many recipients$"),
        reason=ReplyReason.TOO_MANY_RECIPIENTS,
        hint="the message has more recipients than the server takes at once: "
        "send the rest in another transaction",
        doc_url=_POSTCONF + "smtpd_recipient_limit",
        example="452 4.5.3 Error: too many recipients",
        step="RCPT",
    ),
    _Rule(
        provider="Postfix",
        codes=frozenset({450, 550}),
        pattern=_words(r"Client host rejected: cannot find your (reverse )?hostname"),
        reason=ReplyReason.IP_REPUTATION,
        hint="the server refuses IPs without a matching reverse DNS name: give the "
        "sending IP a PTR record that resolves back to it",
        doc_url=_POSTCONF + "reject_unknown_client_hostname",
        example="450 4.7.25 Client host rejected: cannot find your hostname, "
        "[192.0.2.1]",
        step="RCPT",
    ),
)

# The table.  First match wins, so more specific rows come first.  Every row
# cites the provider's documentation (docs/guide/providers.md lists them).
RULES: Final[tuple[_Rule, ...]] = (
    _NETEASE_RULES
    + _QQ_RULES
    + _GMAIL_RULES
    + _MICROSOFT_RULES
    + _SES_RULES
    + _ALIYUN_RULES
    + _POSTFIX_RULES
)
