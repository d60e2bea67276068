-- Conversations between a messenger user and a company (`co:` ids), carried
-- over SIP MESSAGE. The company is not a member row (its tenant login could
-- also be a user's login, who must never see the conversation); how far the
-- company's PBX accepted the user's messages is kept on the conversation.
ALTER TABLE chat_conversations ADD COLUMN peer_delivered_seq BIGINT NOT NULL DEFAULT 0;
